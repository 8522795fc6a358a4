package rootpath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/fsat"
)

// noOpenat2 is set once openat2 turns out to be unavailable (an old
// kernel, or a seccomp filter); tests set it to exercise the walk.
var noOpenat2 atomic.Bool

// Root is a root filesystem on disk, opened for resolving paths in it.
type Root struct {
	fd   int // O_PATH descriptor of the root directory
	mode Mode
	// Mkdir makes the missing directories Options.Create asks for;
	// by default mkdirat with 0755 (less the umask).
	Mkdir func(dirfd int, name string) error
}

// OpenRoot opens the directory dir as a root resolved in mode.
func OpenRoot(dir string, mode Mode) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &Root{fd: fd, mode: mode}, nil
}

// Close releases the root's descriptor.
func (r *Root) Close() error {
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Release closes the root's descriptor until Reopen, so that it does not
// keep a file system mounted at the root busy; meanwhile every operation
// fails (EBADF).
func (r *Root) Release() { _ = r.Close() }

// Reopen opens dir as the root again after Release.
func (r *Root) Reopen(dir string) error {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	_ = r.Close()
	r.fd = fd
	return nil
}

// Open opens rel (relative to the root) with flags, resolved in the
// root's mode. A final symlink is followed unless flags has O_NOFOLLOW,
// which then fails with ELOOP; O_CREAT creates the file with perm.
func (r *Root) Open(rel string, flags int, perm uint32) (int, error) {
	rel = strings.TrimLeft(rel, "/")
	if rel == "" {
		rel = "."
	}
	if !noOpenat2.Load() {
		resolve := uint64(unix.RESOLVE_BENEATH)
		if r.mode == InRoot {
			resolve = unix.RESOLVE_IN_ROOT
		}
		how := unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC),
			Mode:    uint64(perm),
			Resolve: resolve | unix.RESOLVE_NO_MAGICLINKS,
		}
		for range 16 {
			fd, err := unix.Openat2(r.fd, rel, &how)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue // a concurrent rename or mount; retry
			}
			if err == unix.EXDEV {
				err = ErrEscape
			}
			if err != unix.ENOSYS {
				return fd, err
			}
			noOpenat2.Store(true)
			break
		}
	}
	res, err := r.Resolve(rel, Options{FollowFinal: flags&unix.O_NOFOLLOW == 0})
	if err != nil {
		return -1, err
	}
	defer unix.Close(res.Dir)
	return unix.Openat(res.Dir, res.Name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
}

// OpenDir opens the directory rel for reading, creating it and its
// missing parents (with r.Mkdir) when create is set.
func (r *Root) OpenDir(rel string, create bool) (int, error) {
	const flags = unix.O_RDONLY | unix.O_DIRECTORY
	fd, err := r.Open(rel, flags, 0)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	res, err := r.Resolve(rel+"/.", Options{FollowFinal: true, Create: true})
	if err != nil {
		return -1, err
	}
	defer unix.Close(res.Dir)
	return unix.Openat(res.Dir, ".", flags|unix.O_CLOEXEC, 0)
}

// Resolve walks rel step by step (see Walk); Result.Dir is an O_PATH
// descriptor for the caller to close.
func (r *Root) Resolve(rel string, o Options) (Result[int], error) {
	return Walk[int](diskTree{r}, r.fd, rel, r.mode, o)
}

// diskTree steps through directories by descriptor, never letting the
// kernel follow a symlink.
type diskTree struct{ r *Root }

func (diskTree) Lstat(dir int, name string) (Kind, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return 0, err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return KindDir, nil
	case unix.S_IFLNK:
		return KindSymlink, nil
	}
	return KindOther, nil
}

func (diskTree) Readlink(dir int, name string) (string, error) { return fsat.Readlink(dir, name) }

func (diskTree) Enter(dir int, name string) (int, error) {
	return unix.Openat(dir, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

func (t diskTree) Mkdir(dir int, name string) error {
	if t.r.Mkdir != nil {
		return t.r.Mkdir(dir, name)
	}
	return unix.Mkdirat(dir, name, 0o755)
}

func (diskTree) Dup(dir int) (int, error) {
	return unix.FcntlInt(uintptr(dir), unix.F_DUPFD_CLOEXEC, 0)
}

func (diskTree) Release(dir int) { unix.Close(dir) }

// Join resolves the image path p inside the root directory root, as mode
// says, and returns its host path. Symlinks are followed, the final one
// included; components from the first missing one on are joined as they
// are (".." still stopping at, or in Beneath mode refused at, the root).
// The result is a path, not a descriptor: use it only where nobody else
// is changing the tree.
func Join(root, p string, mode Mode) (string, error) {
	r, err := OpenRoot(root, mode)
	if err != nil {
		return "", err
	}
	defer r.Close()
	res, err := r.Resolve(p, Options{FollowFinal: true, Lexical: true})
	if err != nil {
		return "", fmt.Errorf("resolving %s in %s: %w", p, root, err)
	}
	unix.Close(res.Dir)
	return filepath.Join(root, res.Full()), nil
}

// UseOpenat2 turns openat2 off (false) or back on, so that tests can run
// the step-by-step walk that stands in for it on older kernels.
func UseOpenat2(on bool) { noOpenat2.Store(!on) }

// ErrNotRegular is wrapped by OpenRegular's error for a path that is not
// a regular file.
var ErrNotRegular = errors.New("not a regular file")

// OpenRegular opens the regular file rel for reading, following symlinks
// as the root's mode says; the file's name is "/"+rel. A FIFO or device
// is refused (opened without blocking, never read).
func (r *Root) OpenRegular(rel string) (*os.File, error) {
	fd, err := r.Open(rel, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: "/" + rel, Err: err}
	}
	f := os.NewFile(uintptr(fd), "/"+rel)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, &os.PathError{Op: "open", Path: "/" + rel, Err: ErrNotRegular}
	}
	return f, nil
}
