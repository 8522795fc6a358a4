package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fgimg/fgimg/internal/layer"
	"github.com/opencontainers/go-digest"
)

// verifySnapshots compares every snapshot with the layer blob it was
// unpacked from (see layer.Compare), given the blobs that hashed right
// by snapshot name and the names of those that did not. A snapshot that
// differs, or whose blob is gone, is reported and removed: later stages
// would build on it, and the next build unpacks it again from its blob.
// One whose blob is corrupt is left for the user to judge, since the
// blob's problem is reported already.
func (s *Store) verifySnapshots(sound map[string]digest.Digest, corrupt map[string]bool) ([]Problem, error) {
	entries, err := os.ReadDir(s.SnapshotsDir())
	if err != nil {
		return nil, err
	}
	var problems []Problem
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(s.SnapshotsDir(), name)
		flat := strings.HasPrefix(name, flatPrefix)
		if list, ok := strings.CutSuffix(name, ".layers"); flat && ok && e.Type().IsRegular() {
			// A flat snapshot's list is checked with the snapshot; one
			// left without it by a crash is removed.
			if !isDir(filepath.Join(s.SnapshotsDir(), list)) {
				os.Remove(p)
			}
			continue
		}
		if !e.IsDir() {
			problems = append(problems, Problem{Kind: StrayFile, Path: p, Detail: "not a snapshot"})
			continue
		}
		if !flat && corrupt[name] {
			continue
		}
		prob := Problem{Kind: TamperedSnapshot, Path: p}
		var why error
		var lock digest.Digest // the snapshot's lock, when known
		again := "the next build unpacks its layer again"
		switch d, ok := sound[name]; {
		case flat:
			why, lock = s.compareFlat(name, sound)
			again = "the next build that needs it makes it again"
		case !ok:
			why = fmt.Errorf("no layer blob named sha256:%s… is in the store", name)
		default:
			prob.Digest, lock = d, d
			why = s.compareSnapshot(d, p)
		}
		if why == nil {
			continue
		}
		prob.Detail = why.Error()
		if err := s.dropSnapshot(name, lock); err != nil {
			prob.Detail += fmt.Sprintf("; removing it failed: %v", err)
		} else {
			prob.Detail += "; removed it, so " + again
		}
		problems = append(problems, prob)
	}
	return problems, nil
}

// compareFlat compares the flat snapshot name with its layers applied
// afresh; it returns the snapshot's key (its lock) when its list of
// layers is readable.
func (s *Store) compareFlat(name string, sound map[string]digest.Digest) (why error, key digest.Digest) {
	layers, err := s.flatLayers(name)
	if err != nil {
		return fmt.Errorf("its list of layers: %w", err), ""
	}
	key = flatKey(layers)
	for _, l := range layers {
		if sound[snapshotName(l)] != l {
			return fmt.Errorf("its layer %s is missing or corrupt", l), key
		}
	}
	want, err := s.TempDir("verify-")
	if err != nil {
		return err, key
	}
	defer removeAll(want)
	if err := s.applyLayers(layers, want); err != nil {
		return err, key
	}
	return layer.CompareTrees(want, filepath.Join(s.SnapshotsDir(), name)), key
}

func (s *Store) compareSnapshot(d digest.Digest, dir string) error {
	f, err := s.OpenBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return layer.Compare(f, dir)
}

// dropSnapshot removes snapshots/name under the snapshot lock of d (its
// layer, or a flat snapshot's key; when known), so that no unpack races
// with it: it is first renamed into scratch space, so that it vanishes at
// once.
func (s *Store) dropSnapshot(name string, d digest.Digest) error {
	if d != "" {
		unlock, err := s.lockSnapshot(d)
		if err != nil {
			return err
		}
		defer unlock()
	}
	trash, err := s.TempDir("dropped-")
	if err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(s.SnapshotsDir(), name), filepath.Join(trash, name)); err != nil {
		removeAll(trash)
		return err
	}
	os.Remove(filepath.Join(s.SnapshotsDir(), name+".layers")) // a flat snapshot's list
	if err := syncDir(s.SnapshotsDir()); err != nil {
		return err
	}
	return removeAll(trash)
}
