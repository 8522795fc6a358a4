package cache

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

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
	unlock, err := lockFile(context.Background(), filepath.Join(s.root, "locks", "snapshots", layer.Encoded()))
	if err != nil {
		return "", fmt.Errorf("snapshot of %s: locking: %w", layer, err)
	}
	defer unlock()
	if isDir(target) {
		removeAll(dir)
		return target, nil
	}
	if err := os.Chmod(dir, privateMode); err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", layer, err)
	}
	if err := syncFS(dir); err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", layer, err)
	}
	if err := os.Rename(dir, target); err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", layer, err)
	}
	return target, syncDir(s.SnapshotsDir())
}
