package cache

import (
	_ "crypto/sha256" // registers sha256 for go-digest
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/fgimg/fgimg/internal/atomicfile"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Store is a local content-addressed cache rooted at one directory. It is
// safe for concurrent use by multiple goroutines, and several Stores (in
// one or many processes) may share a directory.
type Store struct {
	root string

	// tmp is this Store's private scratch directory under tmp/, held
	// with an exclusive flock through tmpLock until Close.
	tmp     string
	tmpLock *os.File

	// notices are things Open changed that the user should hear of.
	notices []string

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// DefaultDir returns the cache directory to use when none is given:
// $FGIMG_CACHE, else $XDG_CACHE_HOME/fgimg (when absolute, as the XDG
// spec requires), else ~/.cache/fgimg.
func DefaultDir() (string, error) {
	if d := os.Getenv("FGIMG_CACHE"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "fgimg"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("locating cache directory: %w", err)
	}
	return filepath.Join(home, ".cache", "fgimg"), nil
}

// Open opens the store in dir, creating it if needed, and removes scratch
// files left behind by processes that died. Close releases it. The store
// is private to its owner: see prepareRoot for what Open creates, tightens
// and refuses.
func Open(dir string) (*Store, error) {
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("opening cache %s: %w", dir, err)
	}
	notice, err := prepareRoot(root)
	if err != nil {
		return nil, fmt.Errorf("opening cache %s: %w", root, err)
	}
	for _, sub := range []string{
		filepath.Join("blobs", "sha256"),
		filepath.Join("records", "sha256"),
		filepath.Join("locks", "snapshots"),
		"snapshots",
		"tmp",
	} {
		if err := mkdirPrivate(filepath.Join(root, sub)); err != nil {
			return nil, fmt.Errorf("opening cache %s: %w", root, err)
		}
	}
	s := &Store{root: root}
	if notice != "" {
		s.notices = append(s.notices, notice)
	}
	if err := s.cleanTmp(); err != nil {
		return nil, fmt.Errorf("opening cache %s: %w", root, err)
	}
	if err := s.claimTmp(); err != nil {
		return nil, fmt.Errorf("opening cache %s: %w", root, err)
	}
	return s, nil
}

// Notices returns what Open changed in an existing cache, in sentences
// for the user (such as tightening a cache open to other users).
func (s *Store) Notices() []string { return s.notices }

// Dir returns the store's root directory (absolute).
func (s *Store) Dir() string { return s.root }

// Close removes the Store's scratch directory and releases its lock.
// Writers still open are invalidated. Close is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		err := removeAll(s.tmp)
		if cerr := s.tmpLock.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			s.closeErr = fmt.Errorf("closing cache %s: %w", s.root, err)
		}
	})
	return s.closeErr
}

// claimTmp creates this Store's scratch directory and locks it. A
// concurrent Open in another process may remove the directory between
// creation and locking (it looks abandoned then), so after locking we
// check that the path still names the locked directory, and retry if not.
func (s *Store) claimTmp() error {
	base := filepath.Join(s.root, "tmp")
	for range 10 {
		dir, err := os.MkdirTemp(base, "")
		if err != nil {
			return fmt.Errorf("creating scratch directory: %w", err)
		}
		f, err := os.Open(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("creating scratch directory: %w", err)
		}
		if err := flock(f, unix.LOCK_EX); err != nil {
			f.Close()
			return fmt.Errorf("locking scratch directory %s: %w", dir, err)
		}
		if same, err := samePath(f, dir); err != nil || !same {
			f.Close()
			if err != nil {
				return fmt.Errorf("locking scratch directory %s: %w", dir, err)
			}
			continue
		}
		s.tmp, s.tmpLock = dir, f
		return nil
	}
	return errors.New("creating scratch directory: raced with cleanup too often")
}

// cleanTmp removes every entry of tmp/ whose lock is free: its owner is
// gone (flock locks die with the process), so it holds only debris.
func (s *Store) cleanTmp() error {
	base := filepath.Join(s.root, "tmp")
	entries, err := os.ReadDir(base)
	if err != nil {
		return fmt.Errorf("cleaning scratch files: %w", err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(base, e.Name())
		f, err := os.Open(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			// Not openable (e.g. a dangling symlink or a socket): no
			// live Store can own it.
			if err := removeAll(p); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		locked, err := tryFlock(f, unix.LOCK_EX)
		if err == nil && locked {
			// Remove while holding the lock, so that a Store that has
			// just created this directory sees it vanish and retries.
			err = removeAll(p)
		}
		f.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("removing stale scratch %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// scratch returns the Store's scratch directory, or an error after Close.
func (s *Store) scratch() (string, error) {
	if s.closed.Load() {
		return "", fmt.Errorf("cache %s is closed", s.root)
	}
	return s.tmp, nil
}

func (s *Store) blobDir() string { return filepath.Join(s.root, "blobs", "sha256") }

func (s *Store) recordDir() string { return filepath.Join(s.root, "records", "sha256") }

// checkDigest accepts only well-formed sha256 digests; it also keeps
// digests from naming paths outside the store.
func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("invalid digest %q: %w", d, err)
	}
	if d.Algorithm() != digest.SHA256 {
		return fmt.Errorf("digest %s: unsupported algorithm %q (only sha256)", d, d.Algorithm())
	}
	return nil
}

// syncDir fsyncs a directory so that renames and removals in it persist.
func syncDir(dir string) error { return atomicfile.SyncDir(dir) }

// removeAll is os.RemoveAll that also copes with read-only directories,
// which unpacked root filesystems contain (e.g. /proc is 0555) and which
// stop a non-root user from deleting their contents.
func removeAll(p string) error {
	if err := os.RemoveAll(p); err == nil {
		return nil
	}
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}

// WriteFile writes data to path, a file under the store's root (such as
// the catalog's), atomically and durably: through a fsynced file in
// scratch space, a rename and a fsync of path's directory.
func (s *Store) WriteFile(path string, data []byte) error {
	return s.writeFileAtomic(path, data)
}
