package stages

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/fsat"
	"github.com/fgimg/fgimg/internal/rootpath"
)

// root is an image's root filesystem opened for changes made from Go.
//
// Paths are resolved the way the image sees them (rootpath.InRoot), one
// component at a time and never with the kernel following a symlink: an
// absolute symlink target starts again at the root, and ".." stops there,
// as in a chroot. Nothing else changes the tree while a stage's Go code
// runs, so the walk is not racing anyone.
type root struct {
	path string
	fs   *rootpath.Root
	env  *Env // whose open roots list it, or nil
}

// openRoot opens the stage's root filesystem, env.Root; the stage's
// commands (inImage) release it while they run.
func openRoot(env *Env) (*root, error) {
	r, err := openRootDir(env.Root)
	if err != nil {
		return nil, err
	}
	r.env = env
	env.roots = append(env.roots, r)
	return r, nil
}

func openRootDir(dir string) (*root, error) {
	fs, err := rootpath.OpenRoot(dir, rootpath.InRoot)
	if err != nil {
		return nil, err
	}
	// Directories made on the way are 0755 root:root.
	fs.Mkdir = func(dirfd int, name string) error { return mkdirOwned(dirfd, name, 0o755, 0, 0) }
	return &root{path: dir, fs: fs}, nil
}

func (r *root) close() {
	r.fs.Close()
	if r.env != nil {
		r.env.roots = slices.DeleteFunc(r.env.roots, func(o *root) bool { return o == r })
	}
}

// withRootsReleased runs f with the descriptors the stage holds on its
// root filesystem closed, and opens them again afterwards: sandbox.Run
// mounts the root anew for a command with shifted ids, which an open
// descriptor would keep busy.
func (env *Env) withRootsReleased(f func() error) error {
	for _, r := range env.roots {
		r.fs.Release()
	}
	err := f()
	for _, r := range env.roots {
		if rerr := r.fs.Reopen(r.path); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

// relPath turns an absolute image path into the form resolve takes,
// rejecting ".." components and NUL bytes.
func relPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q is not an absolute path", p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("%q contains a NUL byte", p)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return "", fmt.Errorf("%q has a \"..\" component", p)
		}
	}
	return strings.TrimPrefix(path.Clean(p), "/"), nil
}

// resolve walks rel (relative to the root, slash-separated) and returns
// an O_PATH descriptor of the directory that holds its final component
// (the caller closes it) and that component's name, which may not exist.
// A final symlink is followed only when followFinal. With create, missing
// directories on the way are created 0755 root:root. For the root itself
// the name is ".".
func (r *root) resolve(rel string, create, followFinal bool) (dirfd int, name string, err error) {
	res, err := r.fs.Resolve(rel, rootpath.Options{FollowFinal: followFinal, Create: create})
	if err != nil {
		return -1, "", fmt.Errorf("resolving %s in the root filesystem: %w", "/"+rel, err)
	}
	return res.Dir, res.Name, nil
}

// mkdirOwned creates the directory name in dirfd with exactly mode and
// owner (umask does not apply).
func mkdirOwned(dirfd int, name string, mode uint32, uid, gid int) error {
	if err := unix.Mkdirat(dirfd, name, 0o700); err != nil {
		return err
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return setOwnerMode(fd, uid, gid, mode)
}

// setOwnerMode sets the owner, then the mode: chown clears set-id bits.
func setOwnerMode(fd, uid, gid int, mode uint32) error {
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("chown %d:%d: %w", uid, gid, err)
	}
	if err := unix.Fchmod(fd, mode&0o7777); err != nil {
		return fmt.Errorf("chmod %04o: %w", mode&0o7777, err)
	}
	return nil
}

// open opens the image path p (absolute), following every symlink the
// way the image would.
func (r *root) open(p string, flags int) (*os.File, error) {
	rel, err := relPath(p)
	if err != nil {
		return nil, err
	}
	dirfd, name, err := r.resolve(rel, false, true)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	fd, err := unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: p, Err: err}
	}
	return os.NewFile(uintptr(fd), p), nil
}

// readFile reads the image file p; a missing file reads as nil.
func (r *root) readFile(p string) ([]byte, error) {
	f, err := r.open(p, unix.O_RDONLY)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// stat describes the image path p, following symlinks.
func (r *root) stat(p string) (unix.Stat_t, error) { return r.statAt(p, true) }

// lstat describes the image path p itself, not following a final
// symlink.
func (r *root) lstat(p string) (unix.Stat_t, error) { return r.statAt(p, false) }

func (r *root) statAt(p string, followFinal bool) (unix.Stat_t, error) {
	var st unix.Stat_t
	rel, err := relPath(p)
	if err != nil {
		return st, err
	}
	dirfd, name, err := r.resolve(rel, false, followFinal)
	if err != nil {
		return st, err
	}
	defer unix.Close(dirfd)
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return st, &os.PathError{Op: "stat", Path: p, Err: err}
	}
	return st, nil
}

// lookPath finds an executable named name in the standard PATH
// directories of the image and returns its path there, or "".
func (r *root) lookPath(name string) string {
	for _, dir := range strings.Split(standardPath, ":") {
		p := dir + "/" + name
		st, err := r.stat(p)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Mode&0o111 != 0 {
			return p
		}
	}
	return ""
}

// writeFile replaces the image file p (its directory must exist, or is
// created 0755 root:root) with data, mode and owner. A symlink at p is
// replaced, not followed.
func (r *root) writeFile(p string, data []byte, mode uint32, uid, gid int) error {
	rel, err := relPath(p)
	if err != nil {
		return err
	}
	dirfd, name, err := r.resolve(rel, true, false)
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	return replaceFile(dirfd, name, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	}, mode, uid, gid)
}

// replaceFile writes a new file through fill next to name in dirfd and
// renames it over name, so that an existing file (or its hard links) is
// replaced rather than written through.
func replaceFile(dirfd int, name string, fill func(*os.File) error, mode uint32, uid, gid int) error {
	if name == "." {
		return errors.New("is the root directory")
	}
	if err := refuseDir(dirfd, name); err != nil {
		return err
	}
	tmp, fd, err := createTemp(dirfd, name)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), tmp)
	err = fill(f)
	if err == nil {
		err = setOwnerMode(fd, uid, gid, mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = unix.Renameat(dirfd, tmp, dirfd, name)
	}
	if err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
	}
	return err
}

// refuseDir fails when name in dirfd is a directory, which a file or
// symlink must not silently replace.
func refuseDir(dirfd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return errors.New("a directory is in the way")
	}
	return nil
}

func tempName(name string, i int) string {
	return fmt.Sprintf(".fgimg-%d-%d-%s", os.Getpid(), i, name)
}

func createTemp(dirfd int, name string) (string, int, error) {
	for i := 0; ; i++ {
		tmp := tempName(name, i)
		fd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == unix.EEXIST && i < 100 {
			continue
		}
		if err != nil {
			return "", -1, err
		}
		return tmp, fd, nil
	}
}

// remove removes the image path p (not following a final symlink) and,
// for a directory, everything below it. A missing path is not an error.
func (r *root) remove(p string) error {
	rel, err := relPath(p)
	if err != nil {
		return err
	}
	dirfd, name, err := r.resolve(rel, false, false)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	if name == "." {
		return errors.New("refusing to remove the root directory")
	}
	if err := fsat.RemoveAll(dirfd, name); err != nil {
		return &os.PathError{Op: "remove", Path: p, Err: err}
	}
	return nil
}

// clearDir removes everything in the image directory p (following
// symlinks to it), keeping p. A missing directory is not an error; so is
// a name matching keep.
func (r *root) clearDir(p string, keep func(name string) bool) error {
	rel, err := relPath(p)
	if err != nil {
		return err
	}
	dirfd, name, err := r.resolve(rel, false, true)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	err = fsat.ClearDir(dirfd, name, keep)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return &os.PathError{Op: "clear", Path: p, Err: err}
	}
	return nil
}
