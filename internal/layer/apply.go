package layer

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/klauspost/pgzip"
	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/fsat"
	"github.com/fgimg/fgimg/internal/rootpath"
)

// ErrUnsafePath is wrapped by Apply's error for an entry whose name or
// link target would reach outside the target directory.
var ErrUnsafePath = errors.New("path escapes the layer root")

// cleanName validates a tar name or hard link target and returns it
// relative to the root ("" for the root itself).
func cleanName(name string) (string, error) {
	rel, err := rootpath.CleanName(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnsafePath, err)
	}
	return rel, nil
}

// ApplyOptions control how Apply extracts a layer.
type ApplyOptions struct {
	// Overlay records whiteouts the way overlayfs reads them in a lower
	// directory instead of deleting: ".wh.x" becomes a character device
	// 0/0 named x, and an opaque directory gets the xattr
	// trusted.overlay.opaque="y".
	Overlay bool
	// UserXattr uses user.overlay.opaque instead, for overlay mounts
	// with the userxattr option (rootless).
	UserXattr bool
}

// Apply extracts the layer tar read from r (uncompressed, gzip or zstd)
// into the existing directory dir.
func Apply(r io.Reader, dir string, opts ApplyOptions) error {
	rd, closeFn, err := decompress(r)
	if err != nil {
		return fmt.Errorf("applying layer to %s: %w", dir, err)
	}
	defer closeFn()
	root, err := rootpath.OpenRoot(dir, rootpath.Beneath)
	if err != nil {
		return fmt.Errorf("applying layer: %w", err)
	}
	rootFd, err := root.Open(".", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		root.Close()
		return fmt.Errorf("applying layer: %w", &os.PathError{Op: "open", Path: dir, Err: err})
	}
	a := &applier{
		paths:    root,
		root:     rootFd,
		opts:     opts,
		isRoot:   os.Geteuid() == 0,
		cacheFd:  -1,
		buf:      make([]byte, copyBufferSize),
		written:  map[string]struct{}{},
		dirIndex: map[string]int{},
	}
	defer a.close()
	tr := tar.NewReader(rd)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("applying layer to %s: reading tar: %w", dir, err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return fmt.Errorf("applying layer to %s: entry %q: %w", dir, hdr.Name, err)
		}
	}
	// Read to the end so a compressed stream's checksum is verified.
	if _, err := io.CopyBuffer(io.Discard, rd, a.buf); err != nil {
		return fmt.Errorf("applying layer to %s: %w", dir, err)
	}
	if err := a.finishDirs(); err != nil {
		return fmt.Errorf("applying layer to %s: %w", dir, err)
	}
	return nil
}

// decompress sniffs gzip and zstd magic bytes.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, copyBufferSize)
	magic, _ := br.Peek(4) // a short or empty stream is simply not compressed
	switch {
	case len(magic) >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		zr, err := pgzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("reading gzip: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case len(magic) == 4 && magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd:
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("reading zstd: %w", err)
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

type deferredDir struct {
	rel          string
	mode         uint32
	atime, mtime time.Time
}

type applier struct {
	paths  *rootpath.Root // resolves strictly beneath the root
	root   int            // the root directory, opened for reading
	opts   ApplyOptions
	isRoot bool
	buf    []byte

	// One cached parent directory fd: layers are sorted, so consecutive
	// entries mostly share it. Dropped whenever anything is removed or
	// replaced, so it never refers to a directory no longer at cacheRel.
	cacheRel string
	cacheFd  int

	written  map[string]struct{} // paths this layer created; opaque keeps them
	dirs     []deferredDir       // modes and times set last, deepest first
	dirIndex map[string]int
}

func (a *applier) close() {
	a.invalidate()
	unix.Close(a.root)
	a.paths.Close()
}

// forget drops the cached directory if it is rel or lies below it, before
// rel is removed or replaced. The cache then never holds the parent of
// the entry being worked on, which therefore stays valid.
func (a *applier) forget(rel string) {
	if a.cacheFd >= 0 && (rel == "" || a.cacheRel == rel || strings.HasPrefix(a.cacheRel, rel+"/")) {
		a.invalidate()
	}
}

func (a *applier) invalidate() {
	if a.cacheFd >= 0 {
		unix.Close(a.cacheFd)
	}
	a.cacheFd, a.cacheRel = -1, ""
}

// parent returns an fd for the directory rel (beneath the root), creating
// it and its missing parents when create is set. The fd belongs to the
// applier.
func (a *applier) parent(rel string, create bool) (int, error) {
	if rel == "" {
		return a.root, nil
	}
	if a.cacheFd >= 0 && a.cacheRel == rel {
		return a.cacheFd, nil
	}
	fd, err := a.openDir(rel, create)
	if err != nil {
		return -1, err
	}
	a.invalidate()
	a.cacheRel, a.cacheFd = rel, fd
	return fd, nil
}

// openDir opens the directory rel beneath the root; the caller closes
// it. Directories implied by deeper entries get tar's usual 0755.
func (a *applier) openDir(rel string, create bool) (int, error) {
	fd, err := a.paths.OpenDir(rel, create)
	return fd, pathErr(rel, err)
}

func pathErr(rel string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rootpath.ErrEscape):
		return fmt.Errorf("%w: %q leads outside through a symlink", ErrUnsafePath, rel)
	}
	return &os.PathError{Op: "open", Path: rel, Err: err}
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "" {
		return nil // the root's own metadata belongs to whoever made dir
	}
	dirRel, base := splitRel(rel)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(dirRel, base)
	}

	var target string
	if hdr.Typeflag == tar.TypeLink {
		// Validate the link target before touching anything.
		if target, err = cleanName(hdr.Linkname); err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
		if target == "" {
			return fmt.Errorf("%w: hard link to the root", ErrUnsafePath)
		}
	}

	pfd, err := a.parent(dirRel, true)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	exists := err == nil
	isDir := exists && st.Mode&unix.S_IFMT == unix.S_IFDIR
	if exists && !(isDir && hdr.Typeflag == tar.TypeDir) {
		a.forget(rel)
		if err := fsat.RemoveAll(pfd, base); err != nil {
			return fmt.Errorf("replacing existing %s: %w", rel, err)
		}
	}
	a.written[rel] = struct{}{}

	switch hdr.Typeflag {
	case tar.TypeDir:
		if !isDir {
			// Owner-writable until finishDirs sets the real mode.
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return err
			}
		}
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := a.chown(func() error { return unix.Fchown(fd, hdr.Uid, hdr.Gid) }); err != nil {
			return err
		}
		if err := a.setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
			return err
		}
		a.deferDir(rel, hdr)
		return nil

	case tar.TypeReg, tar.TypeGNUSparse:
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(fd), rel)
		defer f.Close()
		// Wrapping f hides its ReaderFrom so the large buffer is used.
		if _, err := io.CopyBuffer(struct{ io.Writer }{f}, r, a.buf); err != nil {
			return fmt.Errorf("writing contents: %w", err)
		}
		// chown clears setuid bits and file capabilities, so it
		// comes before chmod and the xattrs.
		if err := a.chown(func() error { return unix.Fchown(fd, hdr.Uid, hdr.Gid) }); err != nil {
			return err
		}
		if err := unix.Fchmod(fd, uint32(hdr.Mode&0o7777)); err != nil {
			return err
		}
		if err := a.setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
			return err
		}
		return a.setTimes(pfd, base, hdr)

	case tar.TypeLink:
		tdir, tbase := splitRel(target)
		tfd := a.root
		if tdir != "" {
			if tfd, err = a.openDir(tdir, false); err != nil {
				return fmt.Errorf("hard link target: %w", err)
			}
			defer unix.Close(tfd)
		}
		// Without AT_SYMLINK_FOLLOW a symlink target is linked itself,
		// never the file it points to.
		if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
			return fmt.Errorf("hard link to %q: %w", hdr.Linkname, err)
		}
		return nil

	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return err
		}
		return a.special(pfd, base, hdr, false)

	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFIFO)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode = unix.S_IFCHR
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		}
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if err := unix.Mknodat(pfd, base, mode|uint32(hdr.Mode&0o7777), dev); err != nil {
			if err == unix.EPERM && !a.isRoot && hdr.Typeflag != tar.TypeFifo {
				// Unprivileged users cannot create device nodes;
				// a rootless build goes on without them.
				delete(a.written, rel)
				return nil
			}
			return err
		}
		return a.special(pfd, base, hdr, true)
	}
	return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
}

// special sets owner, mode (not for symlinks), xattrs and times on a
// symlink, device or fifo just created as base in pfd.
func (a *applier) special(pfd int, base string, hdr *tar.Header, chmod bool) error {
	if err := a.chown(func() error {
		return unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW)
	}); err != nil {
		return err
	}
	if chmod {
		// base was created by us a moment ago and is no symlink.
		if err := unix.Fchmodat(pfd, base, uint32(hdr.Mode&0o7777), 0); err != nil {
			return err
		}
	}
	// Opening a fifo or device would block or have effects, so xattrs
	// go by path through the pinned parent directory.
	p := fmt.Sprintf("/proc/self/fd/%d/%s", pfd, base)
	if err := a.setXattrs(hdr, func(k string, v []byte) error { return unix.Lsetxattr(p, k, v, 0) }); err != nil {
		return err
	}
	return a.setTimes(pfd, base, hdr)
}

// chown runs set; without root, owners other than ourselves cannot be
// given, so EPERM (and EINVAL for ids unmapped in a user namespace) is
// skipped and files keep the running user as owner.
func (a *applier) chown(set func() error) error {
	err := set()
	if err != nil && !a.isRoot && (err == unix.EPERM || err == unix.EINVAL) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("setting owner: %w", err)
	}
	return nil
}

// setXattrs applies the entry's SCHILY.xattr records in sorted order,
// dropping overlayfs' own attributes: a layer must not steer how overlayfs
// reads the directory it lands in.
func (a *applier) setXattrs(hdr *tar.Header, set func(string, []byte) error) error {
	var names []string
	for k := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && !isOverlayXattr(name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		err := set(name, []byte(hdr.PAXRecords["SCHILY.xattr."+name]))
		if err == unix.EPERM && !a.isRoot {
			// trusted.* and security.capability need privileges a
			// rootless build does not have.
			continue
		}
		if err != nil {
			return fmt.Errorf("setting xattr %s: %w", name, err)
		}
	}
	return nil
}

func (a *applier) setTimes(pfd int, base string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{timespec(atime), timespec(hdr.ModTime)}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("setting times: %w", err)
	}
	return nil
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

func (a *applier) deferDir(rel string, hdr *tar.Header) {
	d := deferredDir{rel: rel, mode: uint32(hdr.Mode & 0o7777), atime: hdr.AccessTime, mtime: hdr.ModTime}
	if d.atime.IsZero() {
		d.atime = d.mtime
	}
	if i, ok := a.dirIndex[rel]; ok {
		a.dirs[i] = d
		return
	}
	a.dirIndex[rel] = len(a.dirs)
	a.dirs = append(a.dirs, d)
}

// finishDirs sets directory modes and times once their contents are in
// place, children before parents. Directories removed or replaced later in
// the layer are skipped.
func (a *applier) finishDirs() error {
	a.invalidate()
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		dirRel, base := splitRel(d.rel)
		pfd, err := a.parent(dirRel, false)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			continue
		}
		if err != nil {
			return err
		}
		fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP {
			continue
		}
		if err != nil {
			return pathErr(d.rel, err)
		}
		err = unix.Fchmod(fd, d.mode)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("setting mode of %s: %w", d.rel, err)
		}
		ts := []unix.Timespec{timespec(d.atime), timespec(d.mtime)}
		if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("setting times of %s: %w", d.rel, err)
		}
	}
	return nil
}

// whiteout handles ".wh.<name>" and ".wh..wh..opq" entries in dirRel.
func (a *applier) whiteout(dirRel, base string) error {
	pfd, err := a.parent(dirRel, a.opts.Overlay)
	if !a.opts.Overlay && errors.Is(err, unix.ENOENT) {
		return nil // nothing there to hide
	}
	if err != nil {
		return err
	}
	if base == opaqueWhiteout {
		if dirRel == "" {
			a.forget("") // pfd is the root, not the cache
		}
		// Hide what earlier layers put here, not what this one did.
		keep := func(name string) bool {
			_, ok := a.written[joinRel(dirRel, name)]
			return ok
		}
		if err := fsat.ClearDir(pfd, ".", keep); err != nil {
			return fmt.Errorf("clearing opaque directory: %w", err)
		}
		if a.opts.Overlay {
			if err := unix.Fsetxattr(pfd, a.opaqueXattr(), []byte("y"), 0); err != nil {
				return fmt.Errorf("marking directory opaque: %w", err)
			}
		}
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("%w: whiteout of %q", ErrUnsafePath, name)
	}
	a.forget(joinRel(dirRel, name))
	if err := fsat.RemoveAll(pfd, name); err != nil {
		return fmt.Errorf("removing %s: %w", joinRel(dirRel, name), err)
	}
	if a.opts.Overlay {
		if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("creating overlay whiteout: %w", err)
		}
		a.written[joinRel(dirRel, name)] = struct{}{}
	}
	return nil
}

func (a *applier) opaqueXattr() string {
	if a.opts.UserXattr {
		return "user.overlay.opaque"
	}
	return "trusted.overlay.opaque"
}
