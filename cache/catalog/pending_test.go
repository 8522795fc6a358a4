package catalog

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// A build records without the index; the next reader takes the
// journal in. A journal a killed taker left is taken again without
// counting a use twice, and a torn last line is skipped.
func TestPendingJournal(t *testing.T) {
	store, c := openTest(t)
	now := time.Now().UTC().Truncate(time.Second)
	e := &Entry{ID: digest.FromString("a"), Name: "a", Type: TypeImage, Status: StatusBuilt, Created: now}
	use := func(at time.Time) []Use {
		return []Use{{ID: e.ID, Name: e.Name, Event: Event{Who: "u", When: at, What: UseExport}}}
	}
	if err := c.Record([]*Entry{e}, use(now)); err != nil {
		t.Fatal(err)
	}
	if c.db != nil {
		t.Fatal("Record opened the index")
	}
	count := func(c *Catalog) int64 {
		t.Helper()
		all, err := c.All(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != 1 {
			t.Fatalf("%d entries, want 1", len(all))
		}
		return all[0].AccessCount
	}
	if n := count(c); n != 1 {
		t.Fatalf("access count %d, want 1", n)
	}
	if exists(c.files.pendingPath()) || exists(c.files.takingPath()) {
		t.Fatal("the journal was not removed once taken")
	}
	// A taker killed after its commit leaves pending.taking behind; a
	// build appends meanwhile, its last line torn by a kill.
	line := `{"keys":["` + e.Key() + `"],"uses":[{"key":"` + e.Key() + `","who":"u","when":"` + now.Format(time.RFC3339Nano) + `","what":"export"}]}` + "\n"
	os.WriteFile(c.files.takingPath(), []byte(line), 0o644)
	if err := c.Record([]*Entry{e}, use(now.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(c.files.pendingPath(), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"keys":["` + e.Key())
	f.Close()
	c2, err := Open(store)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if n := count(c2); n != 2 {
		t.Errorf("access count %d after taking the journal again, want 2", n)
	}
	// The index deleted, a rebuild from the usage logs agrees.
	c.Close()
	c2.Close()
	for _, s := range []string{"", "-wal", "-shm"} {
		os.Remove(filepath.Join(c.files.dir, "index.db"+s))
	}
	c3, _ := Open(store)
	defer c3.Close()
	if n := count(c3); n != 2 {
		t.Errorf("access count %d after a rebuild, want 2", n)
	}
}
