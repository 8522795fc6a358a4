package cpio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/fsat"
)

// TreeOptions tunes WriteTree.
type TreeOptions struct {
	// Epoch, when set, clamps modification times later than it.
	Epoch *time.Time
	// Extra entries are added where the tree has no entry of the same
	// name, such as an "init" symlink. They carry no data except a
	// symlink's target; their parent directory must be in the tree.
	// Their Ino and Nlink are set by WriteTree.
	Extra []Header
	// BufferSize is the Writer's buffer size; DefaultBufferSize when 0.
	BufferSize int
}

// WriteTree writes the directory tree at root as a complete newc
// archive (trailer included) to w.
//
// The root itself is the entry ".", the others are named by their path
// below it ("usr/bin/env"). Entries come depth first, each directory's
// names sorted byte-wise, so a directory comes right before its
// contents. Inodes are numbered from 1 in output order; all the names of
// a hard-linked file (same host device and inode) share one number, and
// Nlink is the number of its names in the archive (the host's count may
// include names outside the tree). The first name carries the data, the
// later ones have size 0: the kernel creates the file at the first name
// and links the others to it. A directory's Nlink is 2 plus its
// subdirectories. Owners, permission bits, symlink targets and device
// numbers are kept; DevMajor and DevMinor are 0 throughout. Nothing else
// of the host (inode numbers, link counts, access times) reaches the
// archive, so the same tree gives the same bytes.
//
// It stats the whole tree first (memory holds one small record per
// entry), then streams the data of each file in order.
func WriteTree(ctx context.Context, w io.Writer, root string, opts TreeOptions) error {
	s := &scanner{ctx: ctx, root: root, byIno: map[devIno]int32{}, extra: map[string][]*Header{}}
	for i := range opts.Extra {
		x := &opts.Extra[i]
		if err := checkExtra(x); err != nil {
			return err
		}
		dir := path.Dir(x.Name)
		s.extra[dir] = append(s.extra[dir], x)
	}
	if err := s.scan(); err != nil {
		return fmt.Errorf("reading %s: %w", root, err)
	}
	for dir, xs := range s.extra {
		if len(xs) > 0 {
			return fmt.Errorf("adding %s: no directory %q in %s", xs[0].Name, dir, root)
		}
	}
	var epoch int64 = -1
	if opts.Epoch != nil {
		epoch = opts.Epoch.Unix()
	}
	size := opts.BufferSize
	if size == 0 {
		size = DefaultBufferSize
	}
	if err := s.write(NewWriterSize(w, size), epoch); err != nil {
		return fmt.Errorf("archiving %s: %w", root, err)
	}
	return nil
}

func checkExtra(x *Header) error {
	switch {
	case x.Name == "" || x.Name == "." || path.Clean(x.Name) != x.Name || path.IsAbs(x.Name) ||
		x.Name == ".." || strings.HasPrefix(x.Name, "../"):
		return fmt.Errorf("extra entry %q: want a clean relative name", x.Name)
	case x.Mode&TypeMask == TypeReg && x.Size != 0:
		return fmt.Errorf("extra entry %q: extra regular files must be empty", x.Name)
	}
	return nil
}

type devIno struct{ dev, ino uint64 }

// entry is one archive entry found by the scan.
type entry struct {
	// name is the archive name of a directory and the base name of the
	// rest, whose parent is entries[parent]: full names of every file
	// would take most of the scan's memory.
	name   string
	parent int32
	link   string // symlink target
	mode   uint32
	uid    uint32
	gid    uint32
	nlink  uint32 // directories only; the others have 1 or their group's count
	mtime  int64
	size   int64
	rdev   uint64
	group  int32 // hard link group, or -1
	extra  bool  // from TreeOptions.Extra: no file on the host
}

// group is one hard-linked file.
type group struct {
	names uint32
	ino   uint32 // assigned when its first name is written
}

type scanner struct {
	ctx     context.Context
	root    string
	entries []entry
	groups  []group
	byIno   map[devIno]int32
	extra   map[string][]*Header // by parent directory; consumed by the scan
}

func (s *scanner) scan() error {
	var st unix.Stat_t
	if err := unix.Stat(s.root, &st); err != nil {
		return &os.PathError{Op: "stat", Path: s.root, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory", s.root)
	}
	s.entries = append(s.entries, s.entry(".", -1, &st))
	return s.dir(s.root, "", 0)
}

func (s *scanner) entry(name string, parent int, st *unix.Stat_t) entry {
	e := entry{
		name:   name,
		parent: int32(parent),
		mode:   st.Mode & (unix.S_IFMT | 0o7777),
		uid:    st.Uid,
		gid:    st.Gid,
		nlink:  1,
		mtime:  st.Mtim.Sec,
		group:  -1,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		e.nlink = 2
	case unix.S_IFREG:
		e.size = st.Size
	case unix.S_IFCHR, unix.S_IFBLK:
		e.rdev = st.Rdev
	}
	if e.mode&TypeMask != TypeDir && st.Nlink > 1 {
		k := devIno{st.Dev, st.Ino}
		g, ok := s.byIno[k]
		if !ok {
			g = int32(len(s.groups))
			s.groups = append(s.groups, group{})
			s.byIno[k] = g
		}
		s.groups[g].names++
		e.group = g
	}
	return e
}

// child is a directory entry read before recursing, so that only one
// directory is open at a time.
type child struct {
	name  string
	st    unix.Stat_t
	link  string
	extra *Header
}

// dir appends the contents of the directory at host (archive name
// prefix, "" for the root), whose own entry is s.entries[self].
func (s *scanner) dir(host, prefix string, self int) error {
	if err := s.ctx.Err(); err != nil {
		return err
	}
	f, err := os.Open(host)
	if err != nil {
		return err
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		return err
	}
	slices.Sort(names) // byte-wise
	kids := make([]child, 0, len(names))
	fd := int(f.Fd())
	for _, name := range names {
		c := child{name: name}
		if err := unix.Fstatat(fd, name, &c.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			f.Close()
			return &os.PathError{Op: "lstat", Path: filepath.Join(host, name), Err: err}
		}
		if c.st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if c.link, err = fsat.Readlink(fd, name); err != nil {
				f.Close()
				return &os.PathError{Op: "readlink", Path: filepath.Join(host, name), Err: err}
			}
		}
		kids = append(kids, c)
	}
	f.Close()

	dirName := strings.TrimSuffix(prefix, "/")
	if dirName == "" {
		dirName = "."
	}
	if xs := s.extra[dirName]; xs != nil {
		for _, x := range xs {
			base := path.Base(x.Name)
			if _, found := slices.BinarySearch(names, base); !found {
				kids = append(kids, child{name: base, extra: x})
			}
		}
		delete(s.extra, dirName)
		slices.SortStableFunc(kids, func(a, b child) int { return strings.Compare(a.name, b.name) })
		kids = slices.CompactFunc(kids, func(a, b child) bool { return a.name == b.name })
	}

	for i := range kids {
		c := &kids[i]
		if c.extra != nil {
			e := extraEntry(c.name, self, c.extra)
			if e.mode&TypeMask == TypeDir {
				e.name = prefix + c.name
				s.entries[self].nlink++
			}
			s.entries = append(s.entries, e)
			continue
		}
		e := s.entry(c.name, self, &c.st)
		e.link = c.link
		if e.mode&TypeMask != TypeDir {
			s.entries = append(s.entries, e)
			continue
		}
		e.name = prefix + c.name
		s.entries = append(s.entries, e)
		s.entries[self].nlink++
		if err := s.dir(filepath.Join(host, c.name), e.name+"/", len(s.entries)-1); err != nil {
			return err
		}
	}
	return nil
}

func extraEntry(name string, parent int, x *Header) entry {
	e := entry{
		name: name, parent: int32(parent), link: x.Linkname, mode: x.Mode, uid: x.Uid, gid: x.Gid, nlink: 1,
		mtime: x.Mtime, rdev: unix.Mkdev(x.RdevMajor, x.RdevMinor), group: -1, extra: true,
	}
	if x.Mode&TypeMask == TypeDir {
		e.nlink = 2
	}
	return e
}

// write writes the scanned entries and the trailer.
func (s *scanner) write(cw *Writer, epoch int64) error {
	next := uint32(1)
	for i := range s.entries {
		if i%256 == 0 {
			if err := s.ctx.Err(); err != nil {
				return err
			}
		}
		e := &s.entries[i]
		h := Header{
			Name: s.fullName(e), Mode: e.mode, Uid: e.uid, Gid: e.gid, Nlink: e.nlink, Mtime: e.mtime,
			Size: e.size, Linkname: e.link,
			RdevMajor: unix.Major(e.rdev), RdevMinor: unix.Minor(e.rdev),
		}
		if epoch >= 0 && h.Mtime > epoch {
			h.Mtime = epoch
		}
		if e.group >= 0 {
			g := &s.groups[e.group]
			h.Nlink = g.names
			if g.ino != 0 {
				h.Ino, h.Size = g.ino, 0 // a later name: the first carried the data
			} else {
				g.ino = next
				next++
				h.Ino = g.ino
			}
		} else {
			h.Ino = next
			next++
		}
		if err := cw.WriteHeader(&h); err != nil {
			return err
		}
		if h.Mode&TypeMask == TypeReg && h.Size > 0 && !e.extra {
			if err := s.copyFile(cw, h.Name, h.Size); err != nil {
				return fmt.Errorf("%s: %w", h.Name, err)
			}
		}
	}
	return cw.Close()
}

// fullName is e's archive name.
func (s *scanner) fullName(e *entry) string {
	if e.parent < 0 || e.mode&TypeMask == TypeDir {
		return e.name
	}
	if e.parent == 0 {
		return e.name // in the root
	}
	return s.entries[e.parent].name + "/" + e.name
}

// copyFile copies size bytes of the file at name into the archive.
func (s *scanner) copyFile(cw *Writer, name string, size int64) error {
	fd, err := unix.Open(filepath.Join(s.root, name), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	r := fdReader{fd: fd, ctx: s.ctx, check: size > 4*int64(len(cw.buf))}
	n, err := cw.ReadFrom(&r)
	if err != nil {
		return err
	}
	if n < size {
		return fmt.Errorf("file shrank from %d to %d bytes while being archived", size, n)
	}
	return nil
}

// fdReader reads a file descriptor; for large files it also watches the
// context, so that cancelling stops a long copy.
type fdReader struct {
	fd    int
	ctx   context.Context
	check bool
}

func (r *fdReader) Read(p []byte) (int, error) {
	if r.check {
		if err := r.ctx.Err(); err != nil {
			return 0, err
		}
	}
	for {
		n, err := unix.Read(r.fd, p)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return 0, err
		case n == 0 && len(p) > 0:
			return 0, io.EOF
		}
		return n, nil
	}
}
