package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// privateMode is the mode of the store's root and of every directory the
// store creates. Snapshots hold images' setuid binaries, device nodes and
// secrets with their modes from the image; only the store's owner may
// reach them, so that no other local user can run an image's setuid-root
// binary or read what a build left there.
const privateMode = 0o700

// prepareRoot makes root a private directory owned by this process's
// user: it creates it (mode 0700) when missing; an existing store whose
// mode lets others in is tightened, and notice says so; any other
// existing directory that others can reach is refused, since tightening
// it could lock its users out of their own files (think --cache-dir /tmp).
// A root owned by another user is refused: they could plant files in it.
func prepareRoot(root string) (notice string, err error) {
	fi, err := os.Stat(root)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
			return "", err
		}
		if err := os.Mkdir(root, privateMode); err != nil && !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		fi, err = os.Stat(root)
	}
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory", root)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return "", fmt.Errorf("%s belongs to user %d, not to this user (%d), who could plant files in it; give this user a cache of its own (--cache-dir DIR or $FGIMG_CACHE)", root, st.Uid, os.Geteuid())
	}
	perm := fi.Mode().Perm()
	if perm&0o077 == 0 {
		return "", nil
	}
	empty, store := isStore(root)
	if !store {
		return "", fmt.Errorf("%s is open to other users (mode %04o) and is not an fgimg cache; the cache holds images' setuid binaries and secrets, so use a new directory (fgimg creates it with mode 0700) or chmod 0700 this one", root, perm)
	}
	if err := os.Chmod(root, privateMode); err != nil {
		return "", err
	}
	if empty {
		return "", nil // a directory made for the cache: nothing to tell
	}
	return fmt.Sprintf("the cache %s was open to other users (mode %04o); it is now 0700, since it holds images' setuid binaries and secrets", root, perm), nil
}

// isStore reports whether dir is empty, and whether it is empty or
// already laid out as a store.
func isStore(dir string) (empty, store bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, false
	}
	if len(entries) == 0 {
		return true, true
	}
	return false, isDir(filepath.Join(dir, "blobs", "sha256")) && isDir(filepath.Join(dir, "records", "sha256"))
}

// mkdirPrivate creates dir and its missing parents below the store's root
// with mode 0700, and tightens dir itself if an older fgimg made it 0755.
func mkdirPrivate(dir string) error {
	if err := os.MkdirAll(dir, privateMode); err != nil {
		return err
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != privateMode {
		return os.Chmod(dir, privateMode)
	}
	return nil
}
