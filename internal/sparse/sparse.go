// Package sparse finds the data in sparse files (SEEK_DATA/SEEK_HOLE), so
// that multi-GB disk images are stored and copied without filling their
// holes.
package sparse

import (
	"errors"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// Extent is a run of data: Len bytes at Off.
type Extent struct{ Off, Len int64 }

// Extents lists f's data runs in order; the gaps between them (and after
// the last, up to the file's size) are holes that read as zeros. A file
// system without SEEK_DATA support reports one extent for the whole file.
func Extents(f *os.File) ([]Extent, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	var out []Extent
	for off := int64(0); off < size; {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole remains
		}
		if err != nil {
			if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP) {
				return []Extent{{0, size}}, nil
			}
			return nil, err
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			return nil, err
		}
		out = append(out, Extent{data, hole - data})
		off = hole
	}
	_, err = f.Seek(0, io.SeekStart)
	return out, err
}

// Copy copies src to dst (a new, empty file) leaving src's holes as holes.
func Copy(dst, src *os.File) error {
	extents, err := Extents(src)
	if err != nil {
		return err
	}
	for _, e := range extents {
		if _, err := io.Copy(io.NewOffsetWriter(dst, e.Off), io.NewSectionReader(src, e.Off, e.Len)); err != nil {
			return err
		}
	}
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	return dst.Truncate(fi.Size())
}
