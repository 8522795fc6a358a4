// Package fsat holds file operations that never follow a symlink:
// reading a link and removing a tree relative to a directory descriptor,
// and opening a checked path's regular file (OpenRegular). Resolving a
// path inside a root is package rootpath's.
package fsat

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Readlink reads the symlink name in the directory dirfd, however long
// its target.
func Readlink(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// RemoveAll removes name in the directory dirfd and, if it is a
// directory, everything below it, never following symlinks. A missing
// name is not an error.
func RemoveAll(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	if err := ClearDir(dirfd, name, nil); err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && err != unix.ENOENT {
		return err
	}
	return nil
}

// ClearDir removes the entries of the directory name in dirfd (not
// following a symlink to it) for which keep, if set, returns false.
func ClearDir(dirfd int, name string, keep func(string) bool) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		if keep != nil && keep(n) {
			continue
		}
		if err := RemoveAll(fd, n); err != nil {
			return err
		}
	}
	return nil
}

// OpenRegular opens the regular file at path for reading, refusing any
// symlink on the way: path is one checked earlier and resolved free of
// symlinks (as lang does for a template's sources), so a symlink found
// now means the path was changed to lead elsewhere. Devices, FIFOs and
// sockets are refused without blocking on them.
func OpenRegular(path string) (*os.File, error) {
	const flags = unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOCTTY | unix.O_NONBLOCK
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   flags,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err == unix.ENOSYS || err == unix.EPERM { // before Linux 5.6, or a seccomp filter that forbids openat2
		fd, err = openNoSymlinks(path, flags)
	}
	if err == unix.ELOOP {
		return nil, &os.PathError{Op: "open", Path: path, Err: errors.New("a symlink is on the path (it was checked free of symlinks; was it changed since?)")}
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &os.PathError{Op: "stat", Path: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openNoSymlinks opens an absolute path one component at a time, each
// with O_NOFOLLOW: what openat2's RESOLVE_NO_SYMLINKS does in one call.
func openNoSymlinks(path string, flags int) (int, error) {
	if !filepath.IsAbs(path) {
		return -1, unix.EINVAL
	}
	dirfd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	parts := strings.Split(strings.Trim(filepath.Clean(path), "/"), "/")
	for i, name := range parts {
		f := unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
		if i == len(parts)-1 {
			f = flags | unix.O_NOFOLLOW
		}
		fd, err := unix.Openat(dirfd, name, f, 0)
		unix.Close(dirfd)
		if err != nil {
			return -1, err
		}
		dirfd = fd
	}
	return dirfd, nil
}
