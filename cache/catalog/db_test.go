package catalog

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/internal/swstack"
	"github.com/opencontainers/go-digest"
)

func openTest(t *testing.T) (*cache.Store, *Catalog) {
	t.Helper()
	store, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	c, err := Open(store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return store, c
}

func names(t *testing.T, c *Catalog, query string, now time.Time) []string {
	t.Helper()
	q, err := ParseQuery(query, now)
	if err != nil {
		t.Fatal(err)
	}
	q.Fields = []string{"name"}
	rows, err := c.Run(context.Background(), q)
	if err != nil {
		t.Fatalf("%q: %v", query, err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, r.Values["name"].(string))
	}
	slices.Sort(out)
	return out
}

func TestQueryRun(t *testing.T) {
	_, c := openTest(t)
	now := time.Now().UTC()
	day := 24 * time.Hour
	mk := func(name string, size int64, created time.Time, tags []string, pkgs ...string) *Entry {
		e := &Entry{ID: digest.FromString(name), Name: name, Type: TypeImage, Kind: "image", Status: StatusBuilt,
			Created: created, Size: size, Tags: tags, OS: "debian-12", Stack: &swstack.Stack{Manager: "dpkg"}}
		for _, p := range pkgs {
			var n, v string
			fmt.Sscanf(p, "%s %s", &n, &v)
			e.Stack.Packages = append(e.Stack.Packages, swstack.Package{Name: n, Version: v})
		}
		return e
	}
	entries := []*Entry{
		mk("hpc-old", 2<<30, now.Add(-200*day), []string{"hpc"}, "openmpi-bin 4.1.4-3", "linux-image-amd64 6.1"),
		mk("hpc-new", 2<<30, now.Add(-200*day), []string{"hpc"}, "openmpi-bin 4.1.6-1"),
		mk("mpi5", 100<<20, now.Add(-200*day), nil, "openmpi-bin 5.0.1-1"),
		mk("web", 100<<20, now.Add(-day), []string{"web"}, "nginx 1.22"),
	}
	// hpc-new was used yesterday.
	uses := []Use{{ID: entries[1].ID, Name: "hpc-new", Event: Event{Who: "alice", When: now.Add(-day), What: UseBoot}}}
	if err := c.Record(entries, uses); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string][]string{
		"where package=openmpi-bin@4.1*, last_access>90d": {"hpc-old"},
		"where package=openmpi-bin@4.1*":                  {"hpc-new", "hpc-old"},
		"where package~^linux-image":                      {"hpc-old"},
		"where package!=openmpi-bin":                      {"web"},
		"where tag=hpc, size>1GiB":                        {"hpc-new", "hpc-old"},
		"where last_access<30d":                           {"hpc-new", "web"},
		"where name~^hpc, access_count>=1":                {"hpc-new"},
		"where os=debian-12, tag!=hpc":                    {"mpi5", "web"},
	} {
		if got := names(t, c, q, now); !slices.Equal(got, want) {
			t.Errorf("%q: %v, want %v", q, got, want)
		}
	}
	// Rebuilding the index from the records gives the same answers,
	// usage included.
	before := names(t, c, "where access_count=1", now)
	if err := c.Rebuild(); err != nil {
		t.Fatal(err)
	}
	if got := names(t, c, "where access_count=1", now); !slices.Equal(got, before) || len(got) != 1 {
		t.Errorf("after rebuild: %v, before %v", got, before)
	}
	e, err := c.Find("hpc-new")
	if err != nil || e.ID != entries[1].ID {
		t.Fatalf("Find by name: %v %v", e, err)
	}
	if e, err := c.Find(entries[2].ID.Encoded()[:8]); err != nil || e.Name != "mpi5" {
		t.Errorf("Find by digest prefix: %v %v", e, err)
	}
}
