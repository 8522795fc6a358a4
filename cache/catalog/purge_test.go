package catalog

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func summary(name string, n int, created, last time.Time, count int64, stages ...string) Summary {
	e := &Entry{ID: digest.FromString(fmt.Sprint(name, n)), Name: name, Type: TypeImage, Status: StatusBuilt, Created: created}
	for _, s := range stages {
		e.Stages = append(e.Stages, Stage{Digest: digest.FromString(s), Size: 100})
	}
	return Summary{Entry: e, LastAccess: last, AccessCount: count}
}

func chosen(cs []Choice) []string {
	var out []string
	for _, c := range cs {
		out = append(out, fmt.Sprintf("%s#%d", c.Entry.Name, len(c.Stages)))
	}
	slices.Sort(out)
	return out
}

func TestChoose(t *testing.T) {
	now := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	old := now.Add(-100 * day)
	all := []Summary{
		// Two builds of "hpc": the older unused for 100 days.
		summary("hpc", 1, old, old, 1, "base", "hpc1"),
		summary("hpc", 2, now.Add(-day), now.Add(-day), 1, "base", "hpc2"),
		// "web" is old but used a lot; "tmp" old and used once.
		summary("web", 1, old, now.Add(-10*day), 1000, "base", "web"),
		summary("tmp", 1, old, now.Add(-9*day), 1, "base", "tmp"),
	}
	// Unused for 90 days: only hpc#1; its "base" stage stays, others use it.
	got := chosen(Choose(all, Policy{UnusedFor: 90 * day, MaxSize: -1, Now: now}))
	if want := []string{"hpc#1"}; !slices.Equal(got, want) {
		t.Errorf("unused-for 90d: %v, want %v", got, want)
	}
	// The newest build of each name is a root with KeepLast 1: nothing goes.
	if got := chosen(Choose(all, Policy{UnusedFor: 90 * day, MaxSize: -1, KeepLast: 1, Now: now})); len(got) != 1 {
		t.Errorf("keep-last 1 must still let hpc#1 go (it is not the newest): %v", got)
	}
	all[0].Keep = true
	if got := chosen(Choose(all, Policy{UnusedFor: 90 * day, MaxSize: -1, Now: now})); len(got) != 0 {
		t.Errorf("a kept entry was chosen: %v", got)
	}
	all[0].Keep = false
	// A budget of 3 stages of 100 bytes: 5 distinct stages are stored.
	// hpc#1 goes for age, then the least valuable: tmp (used once, 9
	// days ago) before web (used 1000 times, 10 days ago).
	got = chosen(Choose(all, Policy{UnusedFor: 90 * day, MaxSize: 300, Now: now}))
	if want := []string{"hpc#1", "tmp#1"}; !slices.Equal(got, want) {
		t.Errorf("max-size: %v, want %v", got, want)
	}
	// A size budget alone (no age policy) keeps what fits; an age of 0
	// ("-unused-for 0s") takes every entry.
	if got := chosen(Choose(all, Policy{UnusedFor: -1, MaxSize: 1000, Now: now})); len(got) != 0 {
		t.Errorf("no age policy and a budget that fits: %v", got)
	}
	if got := chosen(Choose(all, Policy{UnusedFor: 0, MaxSize: -1, Now: now})); len(got) != 4 {
		t.Errorf("unused-for 0: %v, want all 4", got)
	}
	// Purged entries are not chosen again.
	all[0].Entry.Status = StatusPurged
	if got := chosen(Choose(all, Policy{UnusedFor: 90 * day, MaxSize: -1, Now: now})); len(got) != 0 {
		t.Errorf("a purged entry was chosen again: %v", got)
	}
}
