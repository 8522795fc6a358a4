package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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

func (s *Store) compareSnapshot(d digest.Digest, dir string) error {
	f, err := s.OpenBlob(d)
	if err != nil {
		return err
	}
	defer f.Close()
	return layer.Compare(f, dir)
}

// dropSnapshot removes snapshots/name under the snapshot lock of its
// layer d (when known), so that no unpack races with it: it is first
// renamed into scratch space, so that it vanishes at once.
func (s *Store) dropSnapshot(name string, d digest.Digest) error {
	if d != "" {
		unlock, err := lockFile(context.Background(), filepath.Join(s.root, "locks", "snapshots", d.Encoded()))
		if err != nil {
			return err
		}
		defer unlock()
	}
	scratch, err := s.scratch()
	if err != nil {
		return err
	}
	trash, err := os.MkdirTemp(scratch, "dropped-")
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
