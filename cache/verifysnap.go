package cache

import (
	"fmt"
	"io/fs"
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
		p := filepath.Join(s.SnapshotsDir(), e.Name())
		if strings.HasPrefix(e.Name(), flatPrefix) {
			if prob, ok := s.verifyFlat(e, sound); !ok {
				problems = append(problems, prob)
			}
			continue
		}
		if !e.IsDir() {
			problems = append(problems, Problem{Kind: StrayFile, Path: p, Detail: "not a snapshot"})
			continue
		}
		if corrupt[e.Name()] {
			continue
		}
		d, ok := sound[e.Name()]
		var why error
		if !ok {
			why = fmt.Errorf("no layer blob named sha256:%s… is in the store", e.Name())
		} else if why = s.compareSnapshot(d, p); why == nil {
			continue
		}
		prob := Problem{Kind: TamperedSnapshot, Path: p, Digest: d, Detail: why.Error()}
		if err := s.dropSnapshot(e.Name(), d); err != nil {
			prob.Detail += fmt.Sprintf("; removing it failed: %v", err)
		} else {
			prob.Detail += "; removed it, so the next build unpacks its layer again"
		}
		problems = append(problems, prob)
	}
	return problems, nil
}

// verifyFlat checks one entry of snapshots/ that belongs to a flat
// snapshot: its .layers list is checked with the snapshot itself (a list
// left without one by a crash is removed); the snapshot is compared with
// its layers applied afresh, and removed if it differs or a layer is gone.
func (s *Store) verifyFlat(e fs.DirEntry, sound map[string]digest.Digest) (Problem, bool) {
	p := filepath.Join(s.SnapshotsDir(), e.Name())
	if name, ok := strings.CutSuffix(e.Name(), ".layers"); ok && e.Type().IsRegular() {
		if !isDir(filepath.Join(s.SnapshotsDir(), name)) {
			os.Remove(p)
		}
		return Problem{}, true
	}
	if !e.IsDir() {
		return Problem{Kind: StrayFile, Path: p, Detail: "not a snapshot"}, false
	}
	why := s.compareFlat(e.Name(), sound)
	if why == nil {
		return Problem{}, true
	}
	prob := Problem{Kind: TamperedSnapshot, Path: p, Detail: why.Error()}
	var key digest.Digest // its lock's name, when its list is readable
	if layers, err := s.flatLayers(e.Name()); err == nil {
		key = flatKey(layers)
	}
	if err := s.dropSnapshot(e.Name(), key); err != nil {
		prob.Detail += fmt.Sprintf("; removing it failed: %v", err)
	} else {
		os.Remove(p + ".layers")
		prob.Detail += "; removed it, so the next build that needs it makes it again"
	}
	return prob, false
}

func (s *Store) compareFlat(name string, sound map[string]digest.Digest) error {
	layers, err := s.flatLayers(name)
	if err != nil {
		return fmt.Errorf("its list of layers: %w", err)
	}
	for _, l := range layers {
		if sound[snapshotName(l)] != l {
			return fmt.Errorf("its layer %s is missing or corrupt", l)
		}
	}
	want, err := s.TempDir("verify-")
	if err != nil {
		return err
	}
	defer removeAll(want)
	if err := s.applyLayers(layers, want); err != nil {
		return err
	}
	return layer.CompareTrees(want, filepath.Join(s.SnapshotsDir(), name))
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
	if err := syncDir(s.SnapshotsDir()); err != nil {
		return err
	}
	return removeAll(trash)
}
