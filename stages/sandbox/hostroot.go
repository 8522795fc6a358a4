package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A host tool (Spec.Target) runs in a root of its own, built on a tmpfs:
// the host's system directories read-only, so that the tool and what it
// calls (chroot, tar, gpgv, perl, apt) are the host's, and the image's
// root filesystem read-write at Target. The tool is confined as any other
// command: shifted ids, bounded capabilities, the seccomp filter, its own
// network namespace. What it may not see of the host: /home, /root, /var,
// /srv, /opt, /tmp, /run and the like, and files of /etc that only root
// or a group may read (with shifted ids the host's root owns nothing in
// the command's namespace).

// hostDirs are the host's top-level directories a host tool's root
// holds, each as the host has it: a symlink (merged /usr) or a directory
// bound read-only. /etc gives the tool the host's keyrings, certificates
// and name service configuration.
var hostDirs = []string{"usr", "etc", "bin", "sbin", "lib", "lib32", "lib64", "libx32"}

// scratchDirs are made empty in a host tool's root, with their modes.
var scratchDirs = []struct {
	path string
	mode os.FileMode
}{{"/tmp", 0o1777}, {"/var/tmp", 0o1777}, {"/root", 0o700}, {"/run", 0o755}}

// checkHostTool checks the host tool fields of s.
func checkHostTool(s Spec) error {
	if s.Target == "" {
		if len(s.HostPaths) > 0 || s.TargetDevices {
			return errors.New("host paths or target devices without a target")
		}
		return nil
	}
	if err := hostToolPath(s.Target); err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if inHostDirs(s.Target) {
		return fmt.Errorf("target: %s lies in a host directory the tool's root holds", s.Target)
	}
	for _, p := range s.HostPaths {
		if err := hostToolPath(p); err != nil {
			return fmt.Errorf("host path: %w", err)
		}
		if within(p, s.Target) || within(s.Target, p) {
			return fmt.Errorf("host path %s overlaps the target %s", p, s.Target)
		}
	}
	return nil
}

// hostToolPath checks that p can be a path of its own in a host tool's
// root: absolute, clean, and outside /proc, /sys and /dev.
func hostToolPath(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" {
		return fmt.Errorf("%q is not a clean absolute path below /", p)
	}
	for _, d := range []string{"/proc", "/sys", "/dev"} {
		if within(p, d) {
			return fmt.Errorf("%s lies in %s", p, d)
		}
	}
	return nil
}

// inHostDirs reports whether p lies in one of hostDirs (as a host tool's
// root has it: the host's directory, or the directory a link leads to).
func inHostDirs(p string) bool {
	first := strings.SplitN(p[1:], "/", 2)[0]
	for _, d := range hostDirs {
		if first == d {
			return true
		}
	}
	return false
}

// hostRoot turns the mounted image root at r.root into a host tool's
// root: the image moves to cfg.Target inside a fresh tmpfs that holds the
// host's directories.
func (r *rootfs) hostRoot(cfg initConfig) error {
	image, err := unix.OpenTree(unix.AT_FDCWD, r.root, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("cloning the root filesystem's mount: %w", err)
	}
	defer unix.Close(image)
	if err := unix.Mount("tmpfs", r.root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755,size=1g"); err != nil {
		return fmt.Errorf("mounting the host tool's root tmpfs: %w", err)
	}
	for _, name := range hostDirs {
		p := "/" + name
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, os.ErrNotExist):
			continue
		case err != nil:
			return err
		case fi.Mode()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, r.path(p)); err != nil {
				return err
			}
		case fi.IsDir():
			if err := r.bindHost(p, true); err != nil {
				return err
			}
		}
	}
	for _, d := range scratchDirs {
		if err := os.MkdirAll(r.path(d.path), 0o755); err != nil {
			return err
		}
		if err := os.Chmod(r.path(d.path), d.mode); err != nil {
			return err
		}
	}
	for _, p := range cfg.HostPaths {
		if inHostDirs(p) {
			continue // there already
		}
		if err := r.bindHost(p, false); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(r.path(cfg.Target), 0o755); err != nil {
		return err
	}
	if err := unix.MoveMount(image, "", unix.AT_FDCWD, r.path(cfg.Target), unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mounting the root filesystem at %s: %w", cfg.Target, err)
	}
	r.mounts = append(r.mounts, cfg.Target)
	if cfg.TargetDevices {
		return r.mountTargetDevices(cfg.Target + "/dev")
	}
	return nil
}

// mountTargetDevices mounts a tmpfs at p, the target's /dev, with the
// device nodes bound from the host's (as mountDev does for a command's
// own root). p is made when missing and left, empty, afterwards: the root
// filesystem keeps a /dev to mount on.
func (r *rootfs) mountTargetDevices(p string) error {
	fi, err := os.Lstat(r.path(p))
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.Mkdir(r.path(p), 0o755); err != nil {
			return err
		}
	case err != nil:
		return err
	case !fi.IsDir():
		return fmt.Errorf("root filesystem: /dev is not a directory (%s)", fi.Mode().Type())
	}
	if err := r.mount("tmpfs", p, "tmpfs", unix.MS_NOSUID, "mode=755,size=64k"); err != nil {
		return err
	}
	return r.bindDevices(p)
}

// bindHost binds the host's file or directory p read-only at p in the
// host tool's root (a tmpfs: nothing on the way is a symlink but those
// hostRoot made, which lead into the bound directories). A missing p is
// skipped when optional.
func (r *rootfs) bindHost(p string, optional bool) error {
	fi, err := os.Stat(p)
	if err != nil {
		if optional && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if errors.Is(err, os.ErrPermission) {
			return fmt.Errorf("host path: %w (the sandbox's root is an unprivileged user on the host: keep host tools where every user can read them)", err)
		}
		return fmt.Errorf("host path: %w", err)
	}
	if err := os.MkdirAll(r.path(filepath.Dir(p)), 0o755); err != nil {
		return err
	}
	if fi.IsDir() {
		err = os.Mkdir(r.path(p), 0o755)
	} else {
		var f *os.File
		if f, err = os.OpenFile(r.path(p), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err == nil {
			err = f.Close()
		}
	}
	if err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := r.mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	// Read-only all the way down, submounts included.
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(unix.AT_FDCWD, r.path(p), unix.AT_RECURSIVE, &attr); err != nil {
		if !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("making %s read-only: %w", p, err)
		}
		return remountReadOnly(r.path(p))
	}
	return nil
}
