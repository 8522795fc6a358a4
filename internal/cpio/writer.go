package cpio

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// File type bits of Header.Mode, as in st_mode.
const (
	TypeMask    = 0o170000
	TypeSocket  = 0o140000
	TypeSymlink = 0o120000
	TypeReg     = 0o100000
	TypeBlock   = 0o060000
	TypeDir     = 0o040000
	TypeChar    = 0o020000
	TypeFifo    = 0o010000
)

const (
	magic      = "070701"
	headerSize = 110 // magic and 13 eight-digit hex fields

	// Trailer is the name of the entry that ends an archive.
	Trailer = "TRAILER!!!"

	// MaxNameLen is the longest name the kernel unpacks: with its NUL it
	// must fit in PATH_MAX (4096) bytes, or init/initramfs.c skips the
	// entry without a word. Symlink targets have the same limit.
	MaxNameLen = 4095

	// maxField is the largest value of an eight-digit hex field.
	maxField = 1<<32 - 1

	// DefaultBufferSize is how much a Writer collects before it writes to
	// the writer below: large writes suit parallel compressors.
	DefaultBufferSize = 1 << 20
)

// ErrWriteTooLong is returned when more data is written than the
// entry's header announced.
var ErrWriteTooLong = errors.New("cpio: write too long")

// Header is one archive entry.
type Header struct {
	Name  string // path inside the archive, such as "usr/bin/env" or "." for the root
	Mode  uint32 // file type (Type*) and permission bits, as st_mode
	Uid   uint32
	Gid   uint32
	Nlink uint32
	Mtime int64 // seconds since 1970; written clamped to 0..2^32-1
	// Size is the number of data bytes that follow the header: a
	// regular file's contents (0 for the later names of a hard-linked
	// file). Other types have no data; for a symlink, Linkname is the
	// data and Size is ignored.
	Size      int64
	Ino       uint32
	DevMajor  uint32 // the device the file lives on
	DevMinor  uint32
	RdevMajor uint32 // character and block devices: the device's numbers
	RdevMinor uint32
	Linkname  string // symlink target
}

// Writer writes a newc cpio archive, buffered: it hands the writer below
// large blocks (DefaultBufferSize by default).
type Writer struct {
	w      io.Writer
	buf    []byte
	n      int   // buffered bytes in buf[:n]
	remain int64 // data bytes the current entry still owes
	pad    int   // padding after the current entry's data
	err    error // sticky
	closed bool
}

// NewWriter returns a Writer that writes an archive to w.
func NewWriter(w io.Writer) *Writer { return NewWriterSize(w, DefaultBufferSize) }

// NewWriterSize returns a Writer whose buffer is size bytes (at least 4 KiB).
func NewWriterSize(w io.Writer, size int) *Writer {
	return &Writer{w: w, buf: make([]byte, max(size, 4096))}
}

// WriteHeader finishes the current entry (whose data must be complete)
// and starts a new one; then up to h.Size bytes of data may be written.
// It rejects names and symlink targets the kernel would skip, data on
// entries other than regular files, and sizes beyond the format's 4 GiB.
func (w *Writer) WriteHeader(h *Header) error {
	if err := w.finish(); err != nil {
		return err
	}
	size := h.Size
	switch {
	case h.Name == "":
		return w.fail(errors.New("cpio: empty name"))
	case len(h.Name) > MaxNameLen:
		return w.fail(fmt.Errorf("cpio: %q: name longer than %d bytes", h.Name[:64]+"...", MaxNameLen))
	case strings.IndexByte(h.Name, 0) >= 0:
		return w.fail(fmt.Errorf("cpio: %q: name contains a NUL byte", h.Name))
	case h.Name == Trailer:
		return w.fail(fmt.Errorf("cpio: %q is the name that ends an archive", h.Name))
	}
	switch h.Mode & TypeMask {
	case TypeReg:
		if size < 0 || size > maxField {
			return w.fail(fmt.Errorf("cpio: %s: size %d does not fit the newc format (4 GiB at most)", h.Name, size))
		}
	case TypeSymlink:
		if h.Linkname == "" || len(h.Linkname) > MaxNameLen {
			return w.fail(fmt.Errorf("cpio: %s: symlink target must be 1 to %d bytes", h.Name, MaxNameLen))
		}
		size = int64(len(h.Linkname))
	case TypeDir, TypeChar, TypeBlock, TypeFifo, TypeSocket:
		if size != 0 {
			return w.fail(fmt.Errorf("cpio: %s: only regular files and symlinks have data", h.Name))
		}
	default:
		return w.fail(fmt.Errorf("cpio: %s: unknown file type in mode %o", h.Name, h.Mode))
	}
	w.header(h, size)
	if h.Mode&TypeMask == TypeSymlink {
		w.buffer(h.Linkname)
		w.remain = 0
	}
	return w.err
}

// header buffers h's header and name; the entry then owes size bytes.
func (w *Writer) header(h *Header, size int64) {
	mtime := min(max(h.Mtime, 0), maxField)
	nameSize := len(h.Name) + 1
	need := headerSize + nameSize + 3
	if len(w.buf)-w.n < need && w.flush() != nil {
		return
	}
	if len(w.buf)-w.n < need {
		// A name longer than the whole buffer: grow it once.
		w.buf = append(w.buf[:w.n], make([]byte, need)...)
		w.buf = w.buf[:cap(w.buf)]
	}
	b := w.buf[w.n:]
	copy(b, magic)
	i := len(magic)
	for _, v := range [...]uint64{
		uint64(h.Ino), uint64(h.Mode), uint64(h.Uid), uint64(h.Gid), uint64(h.Nlink), uint64(mtime),
		uint64(size), uint64(h.DevMajor), uint64(h.DevMinor), uint64(h.RdevMajor), uint64(h.RdevMinor),
		uint64(nameSize), 0, // check: only the "070702" format sums the data
	} {
		putHex(b[i:i+8], v)
		i += 8
	}
	i += copy(b[i:], h.Name)
	b[i] = 0
	i++
	for ; i%4 != 0; i++ { // header + name end on a 4-byte boundary
		b[i] = 0
	}
	w.n += i
	w.remain = size
	w.pad = int(-size & 3)
}

const hexDigits = "0123456789abcdef"

func putHex(b []byte, v uint64) {
	for i := 7; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

// buffer copies s into the buffer, flushing as it fills.
func (w *Writer) buffer(s string) {
	for len(s) > 0 && w.err == nil {
		if w.n == len(w.buf) && w.flush() != nil {
			return
		}
		c := copy(w.buf[w.n:], s)
		w.n += c
		s = s[c:]
	}
}

// Write writes data of the current entry.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	var tooLong bool
	if int64(len(p)) > w.remain {
		p, tooLong = p[:w.remain], true
	}
	total := 0
	for len(p) > 0 {
		if w.n == len(w.buf) && w.flush() != nil {
			return total, w.err
		}
		c := copy(w.buf[w.n:], p)
		w.n += c
		total += c
		p = p[c:]
	}
	w.remain -= int64(total)
	if tooLong {
		return total, ErrWriteTooLong
	}
	return total, nil
}

// ReadFrom reads the current entry's data from r straight into the
// buffer, until the entry is complete or r ends, and returns how many
// bytes it read; the caller checks that the entry is complete.
func (w *Writer) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for w.remain > 0 && w.err == nil {
		if w.n == len(w.buf) && w.flush() != nil {
			break
		}
		room := w.buf[w.n:]
		if int64(len(room)) > w.remain {
			room = room[:w.remain]
		}
		c, err := r.Read(room)
		w.n += c
		w.remain -= int64(c)
		total += int64(c)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	return total, w.err
}

// Remaining is the number of data bytes the current entry still owes.
func (w *Writer) Remaining() int64 { return w.remain }

// finish checks the current entry is complete and pads it.
func (w *Writer) finish() error {
	switch {
	case w.err != nil:
		return w.err
	case w.closed:
		return w.fail(errors.New("cpio: writer is closed"))
	case w.remain > 0:
		return w.fail(fmt.Errorf("cpio: %d bytes missing from the last entry", w.remain))
	}
	w.buffer("\x00\x00\x00"[:w.pad])
	w.pad = 0
	return w.err
}

// Flush writes what is buffered to the writer below.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	return w.flush()
}

func (w *Writer) flush() error {
	if w.n == 0 {
		return nil
	}
	n, err := w.w.Write(w.buf[:w.n])
	if err == nil && n < w.n {
		err = io.ErrShortWrite
	}
	if err != nil {
		return w.fail(err)
	}
	w.n = 0
	return nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// Close finishes the last entry, writes the trailer and flushes. It does
// not close the writer below.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	if err := w.finish(); err != nil {
		return err
	}
	w.header(&Header{Name: Trailer, Nlink: 1}, 0)
	w.closed = true
	return w.Flush()
}
