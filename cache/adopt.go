package cache

import (
	"fmt"
	"os"

	"github.com/opencontainers/go-digest"
)

// TempDir creates a directory for work in progress on the store's
// filesystem, so that what is built there can be renamed into the store.
// It goes with the store's scratch space: removed by Close, or after a
// crash by the next Open.
func (s *Store) TempDir(pattern string) (string, error) {
	scratch, err := s.scratch()
	if err != nil {
		return "", err
	}
	return os.MkdirTemp(scratch, pattern)
}

// AdoptSnapshot makes dir the snapshot of layer by renaming it into
// place: dir must already hold the layer unpacked in overlay form (a
// stage's finished overlay upper dir, or an origin stage's whole tree)
// and lie in the store (see TempDir). This saves unpacking a layer that
// was just built. When the snapshot exists already, dir is removed. It
// returns the snapshot's path.
func (s *Store) AdoptSnapshot(layer digest.Digest, dir string) (string, error) {
	if err := checkDigest(layer); err != nil {
		return "", fmt.Errorf("snapshot: %w", err)
	}
	target := s.snapshotPath(layer)
	unlock, err := s.lockSnapshot(layer)
	if err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", layer, err)
	}
	defer unlock()
	if isDir(target) {
		removeAll(dir)
		return target, nil
	}
	if err := s.installSnapshot(dir, target); err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", layer, err)
	}
	return target, nil
}
