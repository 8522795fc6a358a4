package sandbox

import (
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// maxOptions is the longest mount option string the kernel accepts (one
// page, including the terminating NUL).
const maxOptions = 4095

// overlayOptions builds the overlay mount options, refusing paths the
// option syntax cannot express and strings the kernel would truncate.
func overlayOptions(lower []string, upper, work string, userxattr bool) (string, error) {
	all := append(append([]string{}, lower...), upper, work)
	for _, p := range all {
		if p == "" {
			return "", errors.New("overlay: empty directory path")
		}
		if strings.ContainsAny(p, ",:\\") {
			return "", fmt.Errorf("overlay: directory path %q contains ',', ':' or '\\'", p)
		}
	}
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + upper + ",workdir=" + work
	if userxattr {
		opts += ",userxattr"
	}
	if len(opts) > maxOptions {
		return "", fmt.Errorf("overlay: options are %d bytes, more than the kernel's %d; use shorter (relative) paths", len(opts), maxOptions)
	}
	return opts, nil
}

// MountOverlay mounts at target an overlay of the lower directories
// (topmost first) with the given upper and work directories, in this
// process's mount namespace, and returns a function that unmounts it.
// With no lower directories, upper is bind-mounted at target instead and
// work is unused. Relative lower, upper and work paths are relative to dir
// when dir is set (it keeps the option string short); a relative target is
// relative to the current directory.
//
// MountOverlay requires Isolate (it returns ErrNotIsolated otherwise):
// only in a private mount namespace is the mount guaranteed to vanish when
// fgimg dies.
func MountOverlay(lower []string, dir, upper, work, target string) (unmount func() error, err error) {
	if !isolated {
		return nil, ErrNotIsolated
	}
	target, err = filepath.Abs(target)
	if err != nil {
		return nil, err
	}
	l := layers{lower: lower, dir: dir, upper: upper, work: work}
	if err := mountLayers(l, target); err != nil {
		return nil, err
	}
	registerOverlay(target, l)
	return func() error {
		unregisterOverlay(target)
		return unmountRoot(target)
	}, nil
}

// mountLayers mounts l at target with the ids as they are on disk.
func mountLayers(l layers, target string) error {
	if len(l.lower) == 0 {
		src := l.upper
		if l.dir != "" && !filepath.IsAbs(src) {
			src = filepath.Join(l.dir, src)
		}
		if err := unix.Mount(src, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("sandbox: bind-mounting %s on %s: %w", src, target, err)
		}
		return nil
	}
	opts, err := overlayOptions(l.lower, l.upper, l.work, inUserNS())
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := mountAt(l.dir, "overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("sandbox: mounting overlay (%s) on %s: %w", opts, target, err)
	}
	return nil
}

// unmountRoot unmounts the root filesystem at target; something that
// still uses it (an open file) makes it detach instead, since the upper
// directory already holds every change.
func unmountRoot(target string) error {
	err := unix.Unmount(target, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(target, unix.MNT_DETACH)
	}
	if err != nil {
		return fmt.Errorf("sandbox: unmounting %s: %w", target, err)
	}
	return nil
}

// mountAt calls mount(2) with relative paths resolved from dir. The
// working directory belongs to the whole process, so the call runs on a
// thread of its own that stops sharing it (unshare CLONE_FS); the thread
// stays locked, and so is discarded when the goroutine ends.
func mountAt(dir, source, target, fstype string, flags uintptr, data string) error {
	if dir == "" {
		return unix.Mount(source, target, fstype, flags, data)
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unsharing the working directory: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount(source, target, fstype, flags, data)
	}()
	return <-errc
}
