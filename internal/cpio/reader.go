package cpio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Reader reads a newc cpio archive entry by entry.
type Reader struct {
	r      *bufio.Reader
	off    int64 // bytes consumed
	remain int64 // unread data of the current entry
	pad    int
	done   bool
}

// NewReader returns a Reader of the archive in r.
func NewReader(r io.Reader) *Reader { return &Reader{r: bufio.NewReaderSize(r, 64<<10)} }

// Next skips what is left of the current entry and returns the next
// header; for a symlink, Linkname holds the target (already read). At
// the trailer it returns io.EOF.
func (r *Reader) Next() (*Header, error) {
	if r.done {
		return nil, io.EOF
	}
	if err := r.skip(r.remain + int64(r.pad)); err != nil {
		return nil, err
	}
	r.remain, r.pad = 0, 0
	var raw [headerSize]byte
	if err := r.full(raw[:]); err != nil {
		return nil, fmt.Errorf("cpio: reading header at %d: %w", r.off-headerSize, unexpected(err))
	}
	if string(raw[:6]) != magic {
		return nil, fmt.Errorf("cpio: bad magic %q at %d", raw[:6], r.off-headerSize)
	}
	var f [13]uint64
	for i := range f {
		v, err := strconv.ParseUint(string(raw[6+8*i:14+8*i]), 16, 32)
		if err != nil {
			return nil, fmt.Errorf("cpio: bad header field %d at %d: %w", i, r.off-headerSize, err)
		}
		f[i] = v
	}
	h := &Header{
		Ino: uint32(f[0]), Mode: uint32(f[1]), Uid: uint32(f[2]), Gid: uint32(f[3]), Nlink: uint32(f[4]),
		Mtime: int64(f[5]), Size: int64(f[6]), DevMajor: uint32(f[7]), DevMinor: uint32(f[8]),
		RdevMajor: uint32(f[9]), RdevMinor: uint32(f[10]),
	}
	nameSize := int(f[11])
	if nameSize < 1 || nameSize > MaxNameLen+1 {
		return nil, fmt.Errorf("cpio: bad name size %d at %d", nameSize, r.off-headerSize)
	}
	name := make([]byte, nameSize+int(-(headerSize+nameSize)&3))
	if err := r.full(name); err != nil {
		return nil, fmt.Errorf("cpio: reading name: %w", unexpected(err))
	}
	if name[nameSize-1] != 0 {
		return nil, fmt.Errorf("cpio: name at %d is not NUL-terminated", r.off-int64(len(name)))
	}
	h.Name = string(name[:nameSize-1])
	if h.Name == Trailer {
		r.done = true
		return nil, io.EOF
	}
	r.remain, r.pad = h.Size, int(-h.Size&3)
	if h.Mode&TypeMask == TypeSymlink {
		target := make([]byte, h.Size)
		if _, err := io.ReadFull(r, target); err != nil {
			return nil, fmt.Errorf("cpio: reading symlink target of %s: %w", h.Name, unexpected(err))
		}
		h.Linkname = string(target)
	}
	return h, nil
}

// Read reads the current entry's data.
func (r *Reader) Read(p []byte) (int, error) {
	if r.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.r.Read(p)
	r.off += int64(n)
	r.remain -= int64(n)
	if err == io.EOF && r.remain > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (r *Reader) full(b []byte) error {
	n, err := io.ReadFull(r.r, b)
	r.off += int64(n)
	return err
}

func (r *Reader) skip(n int64) error {
	d, err := r.r.Discard(int(n))
	r.off += int64(d)
	if err != nil {
		return fmt.Errorf("cpio: skipping data: %w", unexpected(err))
	}
	return nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
