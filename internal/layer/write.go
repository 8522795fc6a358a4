package layer

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	opaqueWhiteout = ".wh..wh..opq"

	// copyBufferSize is the buffer used to stream file contents; large
	// enough that copying multi-gigabyte trees is not syscall bound.
	copyBufferSize = 1 << 20
)

// Options control how a layer is written.
type Options struct {
	// SourceDateEpoch, when set, clamps every modification time written
	// to at most this time (see https://reproducible-builds.org/specs/source-date-epoch/).
	SourceDateEpoch *time.Time
}

// EpochFromEnv reads SOURCE_DATE_EPOCH (whole seconds since the Unix
// epoch). It returns nil when the variable is unset or empty.
func EpochFromEnv() (*time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want a non-negative whole number of seconds", v)
	}
	t := time.Unix(n, 0).UTC()
	return &t, nil
}

// WriteTree writes the whole tree under root (not root itself) to w as an
// uncompressed layer tar.
func WriteTree(w io.Writer, root string, opts Options) error {
	if err := write(w, root, opts, false); err != nil {
		return fmt.Errorf("writing layer from %s: %w", root, err)
	}
	return nil
}

// WriteDiff writes the overlayfs upper directory upper to w as an OCI
// layer tar: whiteout devices become ".wh.<name>" entries, opaque
// directories (trusted.overlay.opaque or user.overlay.opaque "y") get a
// ".wh..wh..opq" entry, and overlayfs' own xattrs are left out. The
// mount must not use redirect_dir or metacopy, whose upper entries do not
// carry the data a layer needs; WriteDiff fails if it meets them.
func WriteDiff(w io.Writer, upper string, opts Options) error {
	if err := write(w, upper, opts, true); err != nil {
		return fmt.Errorf("writing layer from overlay upper dir %s: %w", upper, err)
	}
	return nil
}

type fileID struct{ dev, ino uint64 }

type treeWriter struct {
	root  string
	diff  bool
	epoch *time.Time
	tw    *tar.Writer
	buf   []byte
	links map[fileID]string // first archived name of each multiply-linked inode
	xattr xattrReader
}

func write(w io.Writer, root string, opts Options, diff bool) error {
	st, err := os.Stat(root)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", root)
	}
	bw := bufio.NewWriterSize(w, copyBufferSize)
	t := &treeWriter{
		root:  strings.TrimRight(root, "/"),
		diff:  diff,
		epoch: opts.SourceDateEpoch,
		tw:    tar.NewWriter(bw),
		buf:   make([]byte, copyBufferSize),
		links: map[fileID]string{},
		xattr: newXattrReader(),
	}
	if t.root == "" {
		t.root = "/"
	}
	if err := t.walkDir(""); err != nil {
		return err
	}
	if err := t.tw.Close(); err != nil {
		return err
	}
	return bw.Flush()
}

func (t *treeWriter) abs(rel string) string {
	if rel == "" {
		return t.root
	}
	if t.root == "/" {
		return "/" + rel
	}
	return t.root + "/" + rel
}

// walkDir writes the entries below rel in canonical order.
func (t *treeWriter) walkDir(rel string) error {
	f, err := os.Open(t.abs(rel))
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		return fmt.Errorf("reading directory %s: %w", t.abs(rel), err)
	}
	sort.Strings(names) // byte-wise
	for _, name := range names {
		child := name
		if rel != "" {
			child = rel + "/" + name
		}
		if err := t.entry(child); err != nil {
			return err
		}
	}
	return nil
}

func (t *treeWriter) mtime(ts unix.Timespec) time.Time {
	m := time.Unix(ts.Sec, 0).UTC()
	if t.epoch != nil && m.After(*t.epoch) {
		m = t.epoch.UTC().Truncate(time.Second)
	}
	return m
}

func (t *treeWriter) entry(rel string) error {
	full := t.abs(rel)
	var st unix.Stat_t
	if err := unix.Lstat(full, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: full, Err: err}
	}
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: t.mtime(st.Mtim),
		Format:  tar.FormatPAX,
	}
	kind := st.Mode & unix.S_IFMT

	if t.diff && kind == unix.S_IFCHR && st.Rdev == 0 {
		// An overlay whiteout. Overlayfs may share one whiteout inode
		// between many names, so this test comes before hard links.
		dir, base := splitRel(rel)
		return t.tw.WriteHeader(&tar.Header{
			Name:     joinRel(dir, whiteoutPrefix+base),
			Typeflag: tar.TypeReg,
			ModTime:  hdr.ModTime,
			Format:   tar.FormatPAX,
		})
	}
	if kind == unix.S_IFSOCK {
		return nil // sockets cannot be archived; they are runtime state
	}

	xattrs, opaque, err := t.xattrs(full)
	if err != nil {
		return err
	}
	if len(xattrs) > 0 {
		hdr.PAXRecords = make(map[string]string, len(xattrs))
		for k, v := range xattrs {
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
	}

	if kind != unix.S_IFDIR && st.Nlink > 1 {
		id := fileID{uint64(st.Dev), st.Ino}
		if first, ok := t.links[id]; ok {
			hdr.Typeflag = tar.TypeLink
			hdr.Linkname = first
			return t.tw.WriteHeader(hdr)
		}
		t.links[id] = rel
	}

	switch kind {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		if err := t.tw.WriteHeader(hdr); err != nil {
			return err
		}
		if opaque {
			// Listed first among the directory's entries, as the
			// image spec recommends.
			if err := t.tw.WriteHeader(&tar.Header{
				Name:     rel + "/" + opaqueWhiteout,
				Typeflag: tar.TypeReg,
				ModTime:  hdr.ModTime,
				Format:   tar.FormatPAX,
			}); err != nil {
				return err
			}
		}
		return t.walkDir(rel)
	case unix.S_IFREG:
		hdr.Typeflag = tar.TypeReg
		hdr.Size = st.Size
		if err := t.tw.WriteHeader(hdr); err != nil {
			return err
		}
		return t.copyFile(full, st.Size)
	case unix.S_IFLNK:
		target, err := os.Readlink(full)
		if err != nil {
			return err
		}
		hdr.Typeflag = tar.TypeSymlink
		hdr.Linkname = target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if kind == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor = int64(unix.Major(st.Rdev))
		hdr.Devminor = int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return fmt.Errorf("%s: unsupported file type %#o", full, kind)
	}
	return t.tw.WriteHeader(hdr)
}

func (t *treeWriter) copyFile(full string, size int64) error {
	f, err := os.OpenFile(full, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// LimitReader hides os.File's WriterTo so our large buffer is used.
	n, err := io.CopyBuffer(t.tw, io.LimitReader(f, size), t.buf)
	if err != nil {
		return fmt.Errorf("copying %s: %w", full, err)
	}
	if n != size {
		return fmt.Errorf("copying %s: file shrank from %d to %d bytes while being archived", full, size, n)
	}
	return nil
}

// xattrs returns the extended attributes to archive for full, leaving out
// overlayfs' own, and whether (in diff mode) full is an opaque directory.
func (t *treeWriter) xattrs(full string) (map[string]string, bool, error) {
	names, err := t.xattr.list(full)
	if err != nil {
		return nil, false, err
	}
	var out map[string]string
	opaque := false
	for _, name := range names {
		if isOverlayXattr(name) {
			if !t.diff {
				continue
			}
			switch strings.TrimPrefix(strings.TrimPrefix(name, "trusted."), "user.") {
			case "overlay.opaque":
				v, err := t.xattr.get(full, name)
				if err != nil {
					return nil, false, err
				}
				if string(v) == "y" {
					opaque = true
				}
			case "overlay.redirect", "overlay.metacopy":
				return nil, false, fmt.Errorf("%s has %s: overlay mounts for layers must not use redirect_dir or metacopy", full, name)
			}
			continue
		}
		v, err := t.xattr.get(full, name)
		if err != nil {
			return nil, false, err
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(v)
	}
	return out, opaque, nil
}

func isOverlayXattr(name string) bool {
	return strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.")
}

// xattrReader lists and reads extended attributes without following
// symlinks, reusing one buffer.
type xattrReader struct{ buf []byte }

func newXattrReader() xattrReader { return xattrReader{buf: make([]byte, 4096)} }

func (x *xattrReader) list(path string) ([]string, error) {
	for {
		n, err := unix.Llistxattr(path, x.buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			x.buf = make([]byte, 2*len(x.buf))
		case errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case err != nil:
			return nil, &os.PathError{Op: "llistxattr", Path: path, Err: err}
		default:
			var names []string
			for _, s := range strings.Split(string(x.buf[:n]), "\x00") {
				if s != "" {
					names = append(names, s)
				}
			}
			return names, nil
		}
	}
}

func (x *xattrReader) get(path, name string) ([]byte, error) {
	for {
		n, err := unix.Lgetxattr(path, name, x.buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			x.buf = make([]byte, 2*len(x.buf))
		case err != nil:
			return nil, &os.PathError{Op: "lgetxattr " + name, Path: path, Err: err}
		default:
			return append([]byte(nil), x.buf[:n]...), nil
		}
	}
}

func splitRel(rel string) (dir, base string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}

func joinRel(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}
