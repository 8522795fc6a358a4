package catalog

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fgimg/fgimg/internal/bytesize"
	"github.com/opencontainers/go-digest"
)

// Policy is what `fgimg purge` removes, in the order of BuildKit's GC
// policies: entries unused for UnusedFor, then, while the stored bytes
// of the entries left exceed MaxSize, the least valuable of them (see
// value). Never purged (roots): entries marked keep, the KeepLast newest
// builds of each image or target name, and entries purged already.
type Policy struct {
	UnusedFor time.Duration // negative: no age policy (0: every entry)
	MaxSize   int64         // < 0: no size budget
	KeepLast  int
	Now       time.Time
}

// Choice is an entry purge removes, why, and the stages only it holds.
type Choice struct {
	Entry *Entry
	Why   string
	// Stages are those no entry left standing uses (entries purged
	// together may share some).
	Stages []digest.Digest
}

// value orders entries for the size budget: the last access, moved a
// day later for each doubling of the access count (LRU blended with
// access counts: an image used 64 times outlives one used once a week
// later); the lowest goes first.
func value(s Summary) time.Time {
	return s.LastAccess.Add(time.Duration(math.Log2(1+float64(s.AccessCount)) * float64(24*time.Hour)))
}

// Choose applies pol to every entry.
func Choose(all []Summary, pol Policy) []Choice {
	root := map[string]bool{}
	byName := map[string][]Summary{}
	for _, s := range all {
		if s.Keep {
			root[s.Entry.Key()] = true
		}
		if s.Entry.Status != StatusPurged {
			byName[s.Entry.Type+"/"+s.Entry.Name] = append(byName[s.Entry.Type+"/"+s.Entry.Name], s)
		}
	}
	for _, list := range byName {
		slices.SortFunc(list, func(a, b Summary) int { return b.Entry.Created.Compare(a.Entry.Created) })
		for i := 0; i < pol.KeepLast && i < len(list); i++ {
			root[list[i].Entry.Key()] = true
		}
	}
	chosen := map[string]string{}
	var rest []Summary
	for _, s := range all {
		k := s.Entry.Key()
		if s.Entry.Status == StatusPurged || root[k] {
			continue
		}
		if pol.UnusedFor >= 0 && pol.Now.Sub(s.LastAccess) >= pol.UnusedFor {
			chosen[k] = fmt.Sprintf("unused for %s (last used %s)", roundAge(pol.Now.Sub(s.LastAccess)), s.LastAccess.Local().Format("2006-01-02 15:04"))
			continue
		}
		rest = append(rest, s)
	}
	live := func() map[digest.Digest]int64 {
		m := map[digest.Digest]int64{}
		for _, s := range all {
			if s.Entry.Status != StatusPurged && chosen[s.Entry.Key()] == "" {
				for _, st := range s.Entry.Stages {
					m[st.Digest] = st.Size
				}
			}
		}
		return m
	}
	if pol.MaxSize >= 0 {
		slices.SortStableFunc(rest, func(a, b Summary) int { return cmp.Compare(value(a).UnixNano(), value(b).UnixNano()) })
		for _, s := range rest {
			var total int64
			for _, n := range live() {
				total += n
			}
			if total <= pol.MaxSize {
				break
			}
			chosen[s.Entry.Key()] = fmt.Sprintf("over the size budget (%s stored > %s): least used (%s, last %s)",
				bytesize.Format(total), bytesize.Format(pol.MaxSize), uses(s.AccessCount), s.LastAccess.Local().Format("2006-01-02 15:04"))
		}
	}
	keep := live()
	var out []Choice
	for _, s := range all {
		why := chosen[s.Entry.Key()]
		if why == "" {
			continue
		}
		c := Choice{Entry: s.Entry, Why: why}
		for _, st := range s.Entry.Stages {
			if _, ok := keep[st.Digest]; !ok {
				c.Stages = append(c.Stages, st.Digest)
			}
		}
		out = append(out, c)
	}
	return out
}

func roundAge(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(time.Minute).String()
}

func uses(n int64) string {
	if n == 1 {
		return "1 use"
	}
	return fmt.Sprintf("%d uses", n)
}
