package cache

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fgimg/fgimg/internal/sparse"
)

// zeros is hashed in place of a hole's bytes.
var zeros = make([]byte, 1<<20)

// Skip appends n zero bytes as a hole: they are hashed but not written,
// so a sparse artifact stays sparse in the store.
func (w *BlobWriter) Skip(n int64) error {
	if w.done {
		return errors.New("writing blob: writer already committed or aborted")
	}
	if w.err != nil {
		return w.err
	}
	for left := n; left > 0; {
		k := min(left, int64(len(zeros)))
		w.digester.Hash().Write(zeros[:k])
		left -= k
	}
	w.size += n
	if _, err := w.f.Seek(w.size, io.SeekStart); err != nil {
		w.err = fmt.Errorf("writing blob: %w", err)
		return w.err
	}
	// A hole at the end exists only once the size is set.
	if err := w.f.Truncate(w.size); err != nil {
		w.err = fmt.Errorf("writing blob: %w", err)
	}
	return w.err
}

// PutFile stores a file as a blob, keeping its holes: a multi-GB sparse
// disk image costs only its data.
func (s *Store) PutFile(path string) (Descriptor, error) {
	f, err := os.Open(path)
	if err != nil {
		return Descriptor{}, err
	}
	defer f.Close()
	extents, err := sparse.Extents(f)
	if err != nil {
		return Descriptor{}, fmt.Errorf("reading %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return Descriptor{}, err
	}
	w, err := s.NewBlob()
	if err != nil {
		return Descriptor{}, err
	}
	defer w.Close()
	var off int64
	for _, e := range append(extents, sparse.Extent{Off: fi.Size()}) {
		if e.Off > off {
			if err := w.Skip(e.Off - off); err != nil {
				return Descriptor{}, err
			}
		}
		if _, err := io.Copy(w, io.NewSectionReader(f, e.Off, e.Len)); err != nil {
			return Descriptor{}, fmt.Errorf("reading %s: %w", path, err)
		}
		off = e.Off + e.Len
	}
	return w.Commit()
}
