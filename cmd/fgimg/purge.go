package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/internal/bytesize"
	"github.com/fgimg/fgimg/planner"
	"github.com/opencontainers/go-digest"
)

func cmdPurge(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg purge", flag.ContinueOnError)
	dirFlag := fs.String("cache-dir", "", "the cache `directory`")
	dryRun := fs.Bool("dry-run", false, "print what would be purged, why, and the bytes it frees; remove nothing")
	unusedFor := fs.String("unused-for", "", "purge entries not used for `AGE` (90d, 2w, 12h)")
	maxSize := fs.String("max-size", "", "then purge the least used entries until the cache's entries hold at most `SIZE` (10GiB)")
	keepLast := fs.Int("keep-last", 1, "never purge the newest `N` builds of each image and target")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: fgimg purge [flags]

Removes the stored bytes (layers, artifacts, snapshots) of catalog
entries, by policy: first those unused for -unused-for, then, while the
entries left hold more than -max-size, the least valuable (last use,
helped a day by each doubling of the use count). Never purged: entries
marked with 'fgimg keep', the newest -keep-last builds of each name, and
stages a running build holds. A purged entry stays in the catalog with
its full record, status purged.

Flags:`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if len(pos) > 0 {
		return flagResult(usageError{"fgimg purge takes no arguments"}, errw)
	}
	pol := catalog.Policy{UnusedFor: -1, MaxSize: -1, KeepLast: *keepLast, Now: time.Now()}
	if *unusedFor != "" {
		if pol.UnusedFor, err = catalog.ParseAge(*unusedFor); err != nil {
			return flagResult(usageError{"-unused-for: " + err.Error()}, errw)
		}
	}
	if *maxSize != "" {
		if pol.MaxSize, err = catalog.ParseSize(*maxSize); err != nil {
			return flagResult(usageError{"-max-size: " + err.Error()}, errw)
		}
	}
	if *unusedFor == "" && *maxSize == "" {
		return flagResult(usageError{"fgimg purge needs a policy: -unused-for, -max-size or both"}, errw)
	}
	if pol.KeepLast < 0 {
		return flagResult(usageError{"-keep-last must not be negative"}, errw)
	}
	store, cat, err := openCatalog(*dirFlag, errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	if cat == nil {
		fmt.Fprintln(out, "The cache is empty: nothing to purge.")
		return exitOK
	}
	defer store.Close()
	defer cat.Close()
	all, err := cat.All(ctx)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	verb := "purged"
	if *dryRun {
		verb = "would purge"
	}
	var total int64
	n := 0
	seen := map[digest.Digest]bool{} // stages of entries purged before
	for _, c := range catalog.Choose(all, pol) {
		e := c.Entry
		// A stage a running build holds (builds or reads) stays; the
		// entry is kept when its own stage is one, and purged otherwise.
		probe, err := store.Drop(c.Stages, true)
		busy := map[digest.Digest]bool{}
		if err == nil {
			for _, d := range probe.Busy {
				busy[d] = true
			}
		}
		if err == nil && !busy[e.ID] {
			var fresh []digest.Digest
			for _, d := range c.Stages {
				if !seen[d] && !busy[d] {
					fresh = append(fresh, d)
				}
				seen[d] = true
			}
			probe, err = store.Drop(fresh, *dryRun)
			if err == nil && slices.Contains(probe.Busy, e.ID) {
				busy[e.ID] = true // a build took it since
			}
			if err == nil && !busy[e.ID] && !*dryRun {
				now := time.Now().UTC()
				e.Status, e.Purged = catalog.StatusPurged, &now
				err = cat.Update(e)
			}
		}
		if err != nil {
			fmt.Fprintf(errw, "fgimg: purging %s %s: %s\n", e.Name, planner.Short(e.ID), err)
			return exitFailed
		}
		if busy[e.ID] {
			fmt.Fprintf(out, "kept %s %s %s: in use by a running build\n", e.Type, e.Name, planner.Short(e.ID))
			continue
		}
		fmt.Fprintf(out, "%s %s %s %s: %s; frees %s\n", verb, e.Type, e.Name, planner.Short(e.ID), c.Why, bytesize.Format(probe.Bytes))
		total += probe.Bytes
		n++
	}
	fmt.Fprintf(out, "%s %d entries, %s.\n", map[bool]string{true: "Would purge", false: "Purged"}[*dryRun], n, bytesize.Format(total))
	return exitOK
}
