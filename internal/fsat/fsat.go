// Package fsat holds file operations relative to a directory descriptor
// that never follow a symlink: reading a link, removing a tree. Resolving
// a path inside a root is package rootpath's.
package fsat

import (
	"os"

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
