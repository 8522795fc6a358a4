package lang

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxReadSize bounds what file(), filebase64() and templatefile() read:
// a template inlines small configuration files, not disk images.
const MaxReadSize = 16 << 20

// readScope is what a configuration may read from the build host: the
// directory trees in roots, after symlinks. A template cannot widen it;
// only the operator can, with LoadOptions.AllowRead.
type readScope struct {
	roots []string // absolute and free of symlinks
}

// treeRoot returns the directory tree a configuration in dir may read:
// the root of the git work tree holding dir, else dir itself.
func treeRoot(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	for d := real; ; {
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return d, nil
		}
		up := filepath.Dir(d)
		if up == d {
			return real, nil
		}
		d = up
	}
}

// newReadScope makes the scope of the template directories dirs (each
// widened to its git work tree, looked up once per directory) and the
// operator's extra directories.
func newReadScope(dirs, allow []string) (*readScope, error) {
	s := &readScope{}
	seen := map[string]bool{}
	for _, d := range dirs {
		if seen[d] {
			continue
		}
		seen[d] = true
		r, err := treeRoot(d)
		if err != nil {
			return nil, err
		}
		s.add(r)
	}
	for _, d := range allow {
		abs, err := filepath.Abs(d)
		if err == nil {
			abs, err = filepath.EvalSymlinks(abs)
		}
		if err != nil {
			return nil, fmt.Errorf("--allow-read %s: %w", d, err)
		}
		s.add(abs)
	}
	return s, nil
}

func (s *readScope) add(root string) {
	for _, r := range s.roots {
		if r == root {
			return
		}
	}
	s.roots = append(s.roots, root)
}

// errOutside is the error of a path that leads out of the scope.
type errOutside struct {
	path, real string
	roots      []string
}

func (e *errOutside) Error() string {
	via := ""
	if e.real != e.path {
		via = fmt.Sprintf(" (it leads to %s)", e.real)
	}
	return fmt.Sprintf("%s is outside what a template may read%s: templates read only below %s; the operator can allow more with --allow-read DIR",
		e.path, via, strings.Join(e.roots, ", "))
}

// resolve makes p absolute (relative to dir), follows its symlinks and
// checks that the result lies in the scope. It returns the real path and
// the root that holds it.
func (s *readScope) resolve(dir, p string) (real, root string, err error) {
	if !filepath.IsAbs(p) {
		p = filepath.Join(dir, p)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", "", err
	}
	// The path as written must lie in the scope, whether or not it
	// exists (so that a template cannot probe what exists outside), and
	// so must the file it leads to.
	if s.root(s.realDir(abs)) == "" {
		return "", "", &errOutside{path: abs, real: abs, roots: s.roots}
	}
	real, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", "", err
	}
	if root = s.root(real); root == "" {
		return "", "", &errOutside{path: abs, real: real, roots: s.roots}
	}
	return real, root, nil
}

// root returns the root of the scope that holds p, or "".
func (s *readScope) root(p string) string {
	for _, r := range s.roots {
		if within(p, r) {
			return r
		}
	}
	return ""
}

// realDir resolves the symlinks of the directories an absolute path
// starts with, as far as they exist, but not its last name, so that it
// compares with the scope's roots (themselves resolved: /tmp may be a
// symlink).
func (s *readScope) realDir(abs string) string {
	dir, rest := filepath.Dir(abs), filepath.Base(abs)
	for {
		if real, err := filepath.EvalSymlinks(dir); err == nil {
			return filepath.Join(real, rest)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return abs
		}
		rest = filepath.Join(filepath.Base(dir), rest)
		dir = parent
	}
}

func within(p, root string) bool {
	if root == "/" {
		return true
	}
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

// readFile reads a regular file of at most MaxReadSize bytes in the
// scope. The file is opened through its root (os.Root), so a symlink
// swapped in after resolve cannot lead out of it; devices, FIFOs and the
// files of /proc and /sys are refused without being read.
func (s *readScope) readFile(dir, p string) ([]byte, error) {
	real, root, err := s.resolve(dir, p)
	if err != nil {
		return nil, err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	rel, _ := filepath.Rel(root, real)
	f, err := r.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", real, fileKind(fi.Mode()))
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &st); err == nil && (st.Type == unix.PROC_SUPER_MAGIC || st.Type == unix.SYSFS_MAGIC) {
		return nil, fmt.Errorf("%s is a kernel pseudo-file, not a file of the configuration", real)
	}
	if fi.Size() > MaxReadSize {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d MiB a template may read", real, fi.Size(), MaxReadSize>>20)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxReadSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxReadSize {
		return nil, fmt.Errorf("%s grew past the %d MiB a template may read", real, MaxReadSize>>20)
	}
	return b, nil
}

// fileKind names a non-regular file's type for a message.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case m&os.ModeDevice != 0:
		return "a block device"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	}
	return "mode " + m.String()
}

// isOutside reports whether err says a path leads out of the scope.
func isOutside(err error) bool {
	var e *errOutside
	return errors.As(err, &e)
}
