package catalog

import (
	"fmt"
	"testing"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/opencontainers/go-digest"
)

// BenchmarkRecordNoop is the catalog's part of a no-op build of a
// 10-image pedigree with a target: open the catalog, find every entry
// recorded already, count the target's export.
func BenchmarkRecordNoop(b *testing.B) {
	store, err := cache.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	var entries []*Entry
	for i := range 11 {
		entries = append(entries, &Entry{ID: digest.FromString(fmt.Sprint(i)), Name: fmt.Sprint("i", i), Type: TypeImage, Status: StatusBuilt, Created: time.Now()})
	}
	use := []Use{{ID: entries[10].ID, Name: entries[10].Name, Event: Event{Who: "u", When: time.Now(), What: UseExport}}}
	build := func() {
		c, err := Open(store)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Record(entries, use); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	build() // the first build records the entries
	b.ResetTimer()
	for range b.N {
		build()
	}
}
