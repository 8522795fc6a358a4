package testkit

import (
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/hosttool"
)

// BusyboxPath is where Debian's busybox-static package installs its
// statically linked binary.
const BusyboxPath = "/bin/busybox"

// Paths inside a BusyboxRootfs tree that tests can check survive a trip
// through a layer, a snapshot or an artifact.
const (
	HardLinkA = "usr/share/testkit/hardlink-a" // same inode as HardLinkB
	HardLinkB = "usr/share/testkit/hardlink-b"
	DevNull   = "dev/null" // char 1,3; only when the test runs as root
)

// Epoch is the modification time BusyboxRootfs gives every entry, and
// the SOURCE_DATE_EPOCH OCILayout clamps to, so fixtures are
// reproducible on one host.
var Epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// applets are linked to busybox in bin/ when the host's busybox has them.
var applets = []string{
	"[", "ash", "cat", "chgrp", "chmod", "chown", "cmp", "cp", "cut", "date", "dd",
	"df", "echo", "env", "false", "find", "grep", "gzip", "head", "hostname",
	"id", "ln", "ls", "mkdir", "mknod", "mktemp", "mount", "mv", "printf",
	"ps", "pwd", "readlink", "rm", "rmdir", "sed", "sh", "sleep", "sort",
	"stat", "sync", "tail", "tar", "tee", "test", "touch", "tr", "true", "umount",
	"uname", "uniq", "wc", "which", "whoami", "xargs",
}

const (
	passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`
	group = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
shadow:x:42:
users:x:100:
nogroup:x:65534:
`
	shadow = `root:*:18262:0:99999:7:::
daemon:*:18262:0:99999:7:::
nobody:*:18262:0:99999:7:::
`
	osRelease = `NAME="fgimg test rootfs"
ID=fgimg-test
VERSION_ID=1
PRETTY_NAME="fgimg test rootfs (busybox)"
`
)

var (
	listOnce    sync.Once
	listApplets map[string]bool
	staticErr   error
)

// busybox checks that BusyboxPath is there and statically linked (a
// dynamic busybox would not run in a chroot without a libc), and lists
// its applets.
func busybox(t testing.TB) map[string]bool {
	t.Helper()
	listOnce.Do(func() {
		f, err := elf.Open(BusyboxPath)
		if err != nil {
			staticErr = err
			return
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				staticErr = &os.PathError{Op: "check", Path: BusyboxPath, Err: errDynamic}
				return
			}
		}
		out, err := exec.Command(BusyboxPath, "--list").Output()
		if err != nil {
			staticErr = err
			return
		}
		listApplets = map[string]bool{}
		for _, a := range strings.Fields(string(out)) {
			listApplets[a] = true
		}
	})
	if staticErr != nil {
		Missing(t, fmt.Errorf("testkit needs a static busybox at %s (%v): %w", BusyboxPath, staticErr, hosttool.Missing("busybox")))
	}
	return listApplets
}

var errDynamic = errors.New("dynamically linked")

// BusyboxRootfs fills dir with a tiny working root filesystem: the host's
// static busybox as bin/busybox with symlinks for sh and common applets,
// etc/passwd, etc/group, etc/shadow, etc/os-release, tmp (1777), root,
// dev, proc, sys and run directories, the hard link pair HardLinkA and
// HardLinkB, and (as root) the device node DevNull. Every entry's mtime
// is Epoch. It skips the test when busybox-static is not installed.
func BusyboxRootfs(t testing.TB, dir string) {
	t.Helper()
	have := busybox(t)
	mkdir := func(rel string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatalf("testkit: %v", err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatalf("testkit: %v", err)
		}
	}
	file := func(rel, body string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatalf("testkit: %v", err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatalf("testkit: %v", err)
		}
	}
	symlink := func(target, rel string) {
		t.Helper()
		if err := os.Symlink(target, filepath.Join(dir, rel)); err != nil {
			t.Fatalf("testkit: %v", err)
		}
	}

	for _, d := range []string{"bin", "etc", "dev", "proc", "sys", "run", "usr/bin", "usr/share/testkit"} {
		mkdir(d, 0o755)
	}
	mkdir("root", 0o700)
	mkdir("tmp", 0o777|os.ModeSticky)

	if err := copyFile(BusyboxPath, filepath.Join(dir, "bin/busybox")); err != nil {
		t.Fatalf("testkit: copying busybox: %v", err)
	}
	for _, a := range applets {
		if have[a] {
			symlink("busybox", "bin/"+a)
		}
	}
	symlink("../../bin/busybox", "usr/bin/env") // for #!/usr/bin/env

	file("etc/passwd", passwd, 0o644)
	file("etc/group", group, 0o644)
	file("etc/shadow", shadow, 0o640)
	file("etc/os-release", osRelease, 0o644)
	file("etc/hostname", "testkit\n", 0o644)
	file(HardLinkA, "one inode, two names\n", 0o644)
	if err := os.Link(filepath.Join(dir, HardLinkA), filepath.Join(dir, HardLinkB)); err != nil {
		t.Fatalf("testkit: %v", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(filepath.Join(dir, "etc/shadow"), 0, 42); err != nil {
			t.Fatalf("testkit: %v", err)
		}
		p := filepath.Join(dir, DevNull)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
			t.Fatalf("testkit: mknod %s: %v", p, err)
		}
		if err := os.Chmod(p, 0o666); err != nil {
			t.Fatalf("testkit: %v", err)
		}
	}
	SetTimes(t, dir, Epoch)
}

// SetTimes sets the access and modification times of dir and everything
// below it (symlinks themselves, not their targets) to when.
func SetTimes(t testing.TB, dir string, when time.Time) {
	t.Helper()
	ts := []unix.Timespec{unix.NsecToTimespec(when.UnixNano()), unix.NsecToTimespec(when.UnixNano())}
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	if err != nil {
		t.Fatalf("testkit: setting times under %s: %v", dir, err)
	}
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, 0o755)
}

// WriteFile writes the file rel in the tree at root with body, making
// its directories.
func WriteFile(t testing.TB, root, rel, body string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
