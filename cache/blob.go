package cache

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
)

// Descriptor identifies a committed blob.
type Descriptor struct {
	Digest digest.Digest
	Size   int64
}

// BlobWriter streams a new blob into the store, hashing as it writes.
// Nothing is visible under blobs/ until Commit returns; Abort (or Close
// without Commit) discards it. A BlobWriter is not safe for concurrent
// use.
type BlobWriter struct {
	s        *Store
	f        *os.File
	digester digest.Digester
	size     int64
	done     bool
	err      error // sticky write error
}

// NewBlob starts a new blob. Callers must end it with Commit or Abort;
// `defer w.Close()` right after NewBlob covers the failure paths.
func (s *Store) NewBlob() (*BlobWriter, error) {
	dir, err := s.scratch()
	if err != nil {
		return nil, fmt.Errorf("creating blob: %w", err)
	}
	f, err := os.CreateTemp(dir, "blob-")
	if err != nil {
		return nil, fmt.Errorf("creating blob: %w", err)
	}
	return &BlobWriter{s: s, f: f, digester: digest.Canonical.Digester()}, nil
}

// Write appends p to the blob.
func (w *BlobWriter) Write(p []byte) (int, error) {
	if w.done {
		return 0, errors.New("writing blob: writer already committed or aborted")
	}
	if w.err != nil {
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.digester.Hash().Write(p[:n])
	w.size += int64(n)
	if err != nil {
		w.err = fmt.Errorf("writing blob: %w", err)
		return n, w.err
	}
	return n, nil
}

// Size returns the number of bytes written so far.
func (w *BlobWriter) Size() int64 { return w.size }

// Commit makes the blob durable and visible under its digest and returns
// its descriptor. If an equal blob already exists it is replaced, which
// repairs a blob that was corrupted on disk. After Commit, Close is a
// no-op; if Commit fails the temporary file is removed.
func (w *BlobWriter) Commit() (Descriptor, error) {
	if w.done {
		return Descriptor{}, errors.New("committing blob: writer already committed or aborted")
	}
	if w.err != nil {
		w.Abort()
		return Descriptor{}, fmt.Errorf("committing blob: %w", w.err)
	}
	desc := Descriptor{Digest: w.digester.Digest(), Size: w.size}
	if err := w.commit(desc); err != nil {
		w.Abort()
		return Descriptor{}, fmt.Errorf("committing blob %s: %w", desc.Digest, err)
	}
	w.done = true
	return desc, nil
}

func (w *BlobWriter) commit(desc Descriptor) error {
	if _, err := w.s.scratch(); err != nil {
		return err // the scratch dir is gone or going
	}
	// Blobs are immutable; read-only modes guard against accidents.
	if err := w.f.Chmod(0o444); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	name := w.f.Name()
	if err := w.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, w.s.blobPath(desc.Digest)); err != nil {
		return err
	}
	return syncDir(w.s.blobDir())
}

// Abort discards the blob. It is safe to call more than once and after
// Commit (then it does nothing).
func (w *BlobWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.f.Close()
	os.Remove(w.f.Name())
}

// Close aborts the blob unless it was committed, so that
// `defer w.Close()` cleans up every failure path.
func (w *BlobWriter) Close() error {
	w.Abort()
	return nil
}

// PutBlob stores everything read from r as one blob.
func (s *Store) PutBlob(r io.Reader) (Descriptor, error) {
	w, err := s.NewBlob()
	if err != nil {
		return Descriptor{}, err
	}
	defer w.Close()
	if _, err := io.CopyBuffer(w, r, make([]byte, 1<<20)); err != nil {
		return Descriptor{}, fmt.Errorf("storing blob: %w", err)
	}
	return w.Commit()
}

// OpenBlob opens the blob d for reading. A missing blob gives an error
// that matches fs.ErrNotExist.
func (s *Store) OpenBlob(d digest.Digest) (*os.File, error) {
	if err := checkDigest(d); err != nil {
		return nil, fmt.Errorf("opening blob: %w", err)
	}
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return nil, fmt.Errorf("opening blob %s: %w", d, err)
	}
	return f, nil
}

// BlobPath returns the file path of the committed blob d, for tools that
// want a path. The file must not be modified. A missing blob gives an
// error that matches fs.ErrNotExist.
func (s *Store) BlobPath(d digest.Digest) (string, error) {
	if err := checkDigest(d); err != nil {
		return "", fmt.Errorf("locating blob: %w", err)
	}
	p := s.blobPath(d)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("locating blob %s: %w", d, err)
	}
	return p, nil
}

// HasBlob reports whether blob d has been committed.
func (s *Store) HasBlob(d digest.Digest) bool {
	_, err := s.blobSize(d)
	return err == nil
}

// blobSize returns the size of committed blob d.
func (s *Store) blobSize(d digest.Digest) (int64, error) {
	if err := checkDigest(d); err != nil {
		return 0, err
	}
	fi, err := os.Stat(s.blobPath(d))
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("blob %s is not a regular file", d)
	}
	return fi.Size(), nil
}

// blobPath assumes d has passed checkDigest.
func (s *Store) blobPath(d digest.Digest) string {
	return filepath.Join(s.blobDir(), d.Encoded())
}
