package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// snapshotNameLen is how many hex digits of a layer digest name its
// snapshot. Overlayfs mount options must fit in one page, so with many
// lower dirs every byte counts; 64 bits keep collisions out of reach.
const snapshotNameLen = 16

// SnapshotsDir returns the directory holding snapshots. A caller mounting
// overlayfs can chdir here and pass filepath.Base of each Snapshot dir as
// a relative lower dir, keeping the mount options short.
func (s *Store) SnapshotsDir() string { return filepath.Join(s.root, "snapshots") }

// Snapshot returns a directory holding layer blob layer unpacked, for use
// as an overlayfs lower dir, which callers must not modify. The first
// call unpacks: unpack is given the blob and an empty directory to fill,
// and its result is fsynced and renamed into place, so a snapshot is
// either complete or absent. Concurrent callers, in this process or
// others, wait for that unpack and reuse it; later calls return at once.
func (s *Store) Snapshot(layer digest.Digest, unpack func(r io.Reader, dir string) error) (string, error) {
	if err := checkDigest(layer); err != nil {
		return "", fmt.Errorf("snapshot: %w", err)
	}
	dir := s.snapshotPath(layer)
	err := s.makeSnapshot(dir, layer, func(tmp string) error {
		f, err := s.OpenBlob(layer)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := unpack(f, tmp); err != nil {
			return fmt.Errorf("unpacking: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("snapshot of %s: %w", layer, err)
	}
	return dir, nil
}

// makeSnapshot makes the snapshot dir once: unless it exists, it takes
// the snapshot lock of key (a layer, or a flat snapshot's key), has fill
// write an empty directory in scratch space and installs that as dir.
// Concurrent callers, in this process or others, wait for the first and
// reuse its result.
func (s *Store) makeSnapshot(dir string, key digest.Digest, fill func(tmp string) error) error {
	if isDir(dir) {
		return nil
	}
	unlock, err := s.lockSnapshot(key)
	if err != nil {
		return err
	}
	defer unlock()
	if isDir(dir) {
		return nil // made by whoever held the lock
	}
	tmp, err := s.TempDir("snapshot-")
	if err != nil {
		return err
	}
	defer removeAll(tmp) // a no-op once installed
	if err := fill(tmp); err != nil {
		return err
	}
	return s.installSnapshot(tmp, dir)
}

// lockSnapshot takes the lock that guards making or removing the
// snapshot of key.
func (s *Store) lockSnapshot(key digest.Digest) (unlock func(), err error) {
	unlock, err = lockFile(context.Background(), filepath.Join(s.root, "locks", "snapshots", key.Encoded()))
	if err != nil {
		return nil, fmt.Errorf("locking: %w", err)
	}
	return unlock, nil
}

// installSnapshot renames the finished tree tmp into place as the
// snapshot dir, under its snapshot lock.
func (s *Store) installSnapshot(tmp, dir string) error {
	// The overlay's root takes its mode from the upper dir, so the
	// snapshot's own can be private (see privateMode).
	if err := os.Chmod(tmp, privateMode); err != nil {
		return err
	}
	// Making a snapshot writes many files; one syncfs is far cheaper
	// than an fsync each, and a snapshot must not survive a power loss
	// half-written, since its mere existence marks it complete.
	if err := syncFS(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return syncDir(s.SnapshotsDir())
}

// snapshotPath assumes d has passed checkDigest.
func (s *Store) snapshotPath(d digest.Digest) string {
	return filepath.Join(s.SnapshotsDir(), snapshotName(d))
}

// snapshotName is the name of layer d's snapshot in snapshots/.
func snapshotName(d digest.Digest) string { return d.Encoded()[:snapshotNameLen] }

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

func syncFS(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		err = unix.Syncfs(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return &fs.PathError{Op: "syncfs", Path: dir, Err: err}
	}
	return nil
}
