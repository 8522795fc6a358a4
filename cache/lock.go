package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Lock takes the exclusive lock of stage digest d, shared by every process
// using this store, blocking until it is acquired or ctx is done. The
// usual pattern is
//
//	unlock, err := s.Lock(ctx, d)
//	if err != nil { ... }
//	defer unlock()
//	if s.Has(d) { return } // another process built it while we waited
//	... build, PutBlob, PutRecord ...
//
// Locks are flock(2) locks on open files: the kernel drops them when the
// holder dies, and two Lock calls in one process exclude each other too.
// Lock is not reentrant: taking the same digest twice without unlocking
// deadlocks until ctx is done.
func (s *Store) Lock(ctx context.Context, d digest.Digest) (unlock func(), err error) {
	if err := checkDigest(d); err != nil {
		return nil, fmt.Errorf("locking stage: %w", err)
	}
	unlock, err = lockFile(ctx, filepath.Join(s.root, "locks", d.Encoded()))
	if err != nil {
		return nil, fmt.Errorf("locking stage %s: %w", d, err)
	}
	return unlock, nil
}

// lockFile takes an exclusive flock on path, creating the file if needed.
// Lock files are never removed by the store, but if one is (say by a
// future gc that holds the lock while removing it), the holder-to-be
// notices that its file is no longer the one at path and starts over.
func lockFile(ctx context.Context, path string) (func(), error) {
	const maxSleep = 50 * time.Millisecond
	sleep := time.Millisecond
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			return nil, err
		}
		for {
			ok, err := tryFlock(f, unix.LOCK_EX)
			if err != nil {
				f.Close()
				return nil, err
			}
			if ok {
				break
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, ctx.Err()
			case <-time.After(sleep):
			}
			sleep = min(2*sleep, maxSleep)
		}
		same, err := samePath(f, path)
		if err != nil {
			f.Close()
			return nil, err
		}
		if !same {
			f.Close()
			continue
		}
		var once sync.Once
		return func() {
			once.Do(func() {
				// Closing the last descriptor releases the lock.
				f.Close()
			})
		}, nil
	}
}

// tryFlock attempts a non-blocking flock; ok is false if someone else
// holds a conflicting lock.
func tryFlock(f *os.File, how int) (ok bool, err error) {
	for {
		err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return false, nil
		default:
			return false, fmt.Errorf("flock %s: %w", f.Name(), err)
		}
	}
}

// flock takes a blocking flock.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		return nil
	}
}

// samePath reports whether path still names the file open as f.
func samePath(f *os.File, path string) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	pi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return os.SameFile(fi, pi), nil
}

// Hold marks stages as in use until release is called: Drop (purge,
// gc) leaves a held stage alone, and a stage Drop is removing is held
// only once Drop is done, so the holder then finds it missing (and
// builds it again) rather than half removed. A build holds every stage
// of its plan, those it builds and those it only reads, for as long as
// it uses them; many builds can hold one stage at once.
//
// The marks are shared flock(2) locks on locks/<hex>.use, which Drop
// tries to take exclusively; the kernel drops them when the holder dies.
func (s *Store) Hold(stages []digest.Digest) (release func(), err error) {
	var files []*os.File
	release = func() {
		for _, f := range files {
			f.Close()
		}
		files = nil
	}
	for _, d := range stages {
		if err := checkDigest(d); err != nil {
			release()
			return nil, fmt.Errorf("holding stage: %w", err)
		}
		f, err := os.OpenFile(s.usePath(d), os.O_RDWR|os.O_CREATE, 0o644)
		if err == nil {
			if err = flock(f, unix.LOCK_SH); err != nil {
				f.Close()
			}
		}
		if err != nil {
			release()
			return nil, fmt.Errorf("holding stage %s: %w", d, err)
		}
		files = append(files, f)
	}
	return release, nil
}

func (s *Store) usePath(d digest.Digest) string {
	return filepath.Join(s.root, "locks", d.Encoded()+".use")
}
