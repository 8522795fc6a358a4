package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Dropped is what Drop removed, or would remove.
type Dropped struct {
	// Records are the stage and target records removed.
	Records []digest.Digest
	// Busy are the records left because another build holds their lock.
	Busy []digest.Digest
	// Blobs are the blobs removed: no remaining record names them.
	Blobs []digest.Digest
	// Bytes is the size of those blobs.
	Bytes int64
}

// Drop removes the records of stages and, once no remaining record names
// them, their blobs and the snapshots unpacked from those blobs. A stage
// whose lock another build holds, or that a build holds in use (Hold),
// is left as it is and listed in Busy.
// With dryRun nothing is removed: Drop says what it would remove.
//
// Each record is removed under its stage lock, so a build that is
// making it finishes first (and the record is then kept, since the lock
// was busy). The in-use mark of every record removed is held until Drop
// returns, so a build that wants one of them waits and then finds it
// missing. Blobs are removed only when no record on disk names them,
// so a record that a concurrent build writes meanwhile for the same
// content keeps only what it committed after this scan.
func (s *Store) Drop(stages []digest.Digest, dryRun bool) (Dropped, error) {
	var res Dropped
	candidates := map[digest.Digest]int64{} // blobs of dropped records
	var marks []func()
	defer func() {
		for _, m := range marks {
			m()
		}
	}()
	for _, d := range stages {
		if err := checkDigest(d); err != nil {
			return res, fmt.Errorf("dropping: %w", err)
		}
		unlock, ok, err := s.tryLock(d)
		if err != nil {
			return res, err
		}
		var unmark func()
		if ok {
			if unmark, ok, err = tryLockFile(s.usePath(d)); err != nil || !ok {
				unlock()
			}
		}
		if err != nil {
			return res, err
		}
		if !ok {
			res.Busy = append(res.Busy, d)
			continue
		}
		marks = append(marks, unmark)
		rec, err := s.Record(d)
		if err == nil && !dryRun {
			err = s.Remove(d)
		}
		unlock()
		if errors.Is(err, fs.ErrNotExist) {
			continue // already gone
		}
		if err != nil {
			return res, err
		}
		res.Records = append(res.Records, d)
		for _, o := range rec.Outputs {
			candidates[o.Digest] = o.Size
		}
		if rec.Log != "" {
			candidates[rec.Log], _ = s.blobSize(rec.Log)
		}
	}
	if len(candidates) == 0 {
		return res, nil
	}
	// Blobs still named by a record stay: records the dry run would
	// remove are left out of the scan, so that it counts alike.
	recs, err := s.Records()
	if err != nil {
		return res, fmt.Errorf("dropping: %w", err)
	}
	gone := map[digest.Digest]bool{}
	for _, d := range res.Records {
		gone[d] = true
	}
	for _, r := range recs {
		if gone[r.Digest] {
			continue
		}
		for _, o := range r.Outputs {
			delete(candidates, o.Digest)
		}
		delete(candidates, r.Log)
	}
	for b, size := range candidates {
		if !s.HasBlob(b) {
			continue
		}
		if !dryRun {
			if err := s.dropSnapshot(snapshotName(b), b); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("dropping snapshot of %s: %w", b, err)
			}
			if err := os.Remove(s.blobPath(b)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return res, fmt.Errorf("dropping blob %s: %w", b, err)
			}
		}
		res.Blobs = append(res.Blobs, b)
		res.Bytes += size
	}
	if dryRun {
		return res, nil
	}
	if err := syncDir(s.blobDir()); err != nil {
		return res, err
	}
	return res, s.dropFlats(candidates)
}

// dropFlats removes the flat snapshots made from any of the layers.
func (s *Store) dropFlats(layers map[digest.Digest]int64) error {
	entries, err := os.ReadDir(s.SnapshotsDir())
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, flatPrefix) || !e.IsDir() {
			continue
		}
		list, err := s.flatLayers(name)
		if err != nil {
			continue // verify reports it
		}
		for _, l := range list {
			if _, ok := layers[l]; ok {
				if err := s.dropSnapshot(name, flatKey(list)); err != nil {
					return fmt.Errorf("dropping flat snapshot %s: %w", name, err)
				}
				break
			}
		}
	}
	return nil
}

// tryLock takes the stage lock of d if it is free.
func (s *Store) tryLock(d digest.Digest) (unlock func(), ok bool, err error) {
	unlock, ok, err = tryLockFile(filepath.Join(s.root, "locks", d.Encoded()))
	if err != nil {
		return nil, false, fmt.Errorf("locking stage %s: %w", d, err)
	}
	return unlock, ok, nil
}

// tryLockFile takes an exclusive flock on path if it is free.
func tryLockFile(path string) (unlock func(), ok bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, false, err
	}
	ok, err = tryFlock(f, unix.LOCK_EX)
	if err != nil || !ok {
		f.Close()
		return nil, false, err
	}
	return func() { f.Close() }, true, nil
}
