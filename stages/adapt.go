package stages

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fgimg/fgimg/internal/rootpath"
)

// DiskAdapt adapts an image to boot from a disk that fgimg writes: an
// /etc/fstab mounting the root file system and the EFI system partition
// by the UUIDs the disk's writer gives them, the /boot/efi mount point
// and, when the image has a kernel, the hook that keeps the ESP's copy of
// the kernel current after updates. The UUIDs derive from the image (see
// targets), so every disk target of one image shares this stage.
type DiskAdapt struct {
	RootUUID string `json:"root_uuid"` // the ext4 root file system's UUID
	// ESPUUID is the ESP's FAT volume serial, as "89AB-CDEF"; "" for
	// a root file system without a disk around it (an instance-store
	// image's, booted by the cloud's kernel): no /boot/efi, no hook.
	ESPUUID string `json:"esp_uuid"`
}

func (*DiskAdapt) Kind() string { return "disk-adapt" }

// runDiskAdapt writes the fstab and the ESP hook. Their times (and those
// of the directories it makes) are the image's newest, so that the
// adaptation does not move the image's own date (a disk's file system
// times derive from it).
func runDiskAdapt(ctx context.Context, s *DiskAdapt, env *Env) error {
	if s.RootUUID == "" {
		return errors.New("no file system UUIDs to write into /etc/fstab")
	}
	stamp, err := newestTime(ctx, env.Root)
	if err != nil {
		return err
	}
	if err := writeFstab(env.Root, s.RootUUID, s.ESPUUID, stamp); err != nil {
		return fmt.Errorf("writing /etc/fstab: %w", err)
	}
	if s.ESPUUID == "" {
		fmt.Fprintf(env.Log, "fgimg: wrote /etc/fstab: / on UUID=%s (no ESP: the cloud boots the kernel)\n", s.RootUUID)
		return nil
	}
	fmt.Fprintf(env.Log, "fgimg: wrote /etc/fstab: / on UUID=%s, /boot/efi on UUID=%s\n", s.RootUUID, s.ESPUUID)
	kernels, err := BootKernels(env.Root)
	if err != nil {
		return err
	}
	if len(kernels) == 0 {
		fmt.Fprintln(env.Log, "fgimg: no kernel in /boot: no ESP kernel hook")
		return nil
	}
	if err := writeESPHook(env.Root, stamp); err != nil {
		return fmt.Errorf("writing the kernel hook that updates the EFI system partition: %w", err)
	}
	fmt.Fprintf(env.Log, "fgimg: wrote the ESP kernel hook %s\n", strings.Join(espHookPaths, ", "))
	return nil
}

// newestTime is the newest modification time in the tree at root.
func newestTime(ctx context.Context, root string) (time.Time, error) {
	var newest time.Time
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if t := fi.ModTime(); t.After(newest) {
			newest = t
		}
		return nil
	})
	return time.Unix(newest.Unix(), 0), err
}

// Kernel is one /boot/vmlinuz-VERSION of an image.
type Kernel struct {
	Version string
	Path    string // the host path, resolved inside the image
}

// BootKernels returns the image's kernels: the regular files (through
// symlinks inside the image) /boot/vmlinuz-VERSION, but *.old ones, in
// no particular order. What the disk adaptation and the disk writer
// call the image's kernels.
func BootKernels(root string) ([]Kernel, error) {
	boot, err := resolveIn(root, "/boot")
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(boot)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Kernel
	for _, e := range ents {
		v, ok := strings.CutPrefix(e.Name(), "vmlinuz-")
		if !ok || v == "" || strings.HasSuffix(v, ".old") {
			continue
		}
		p, err := resolveIn(root, "/boot/"+e.Name())
		if err != nil {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			out = append(out, Kernel{Version: v, Path: p})
		}
	}
	return out, nil
}

// resolveIn resolves the absolute path p inside the image at root as the
// image itself would, never out of it. The result need not exist.
func resolveIn(root, p string) (string, error) {
	return rootpath.Join(root, p, rootpath.InRoot)
}

// writeFstab writes the image's /etc/fstab for the disk: the root file
// system and the ESP by UUID, keeping the image's entries for other
// mount points, and makes /boot/efi. Times are t, and the parent
// directories keep theirs, so the image stays reproducible.
func writeFstab(root, rootUUID, espUUID string, t time.Time) error {
	etc, err := mkdirIn(root, "/etc", t)
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# /etc/fstab: static file system information, written by fgimg for the disk.\n")
	b.WriteString("# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>\n")
	fmt.Fprintf(&b, "UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n", rootUUID)
	if espUUID != "" {
		fmt.Fprintf(&b, "UUID=%s\t/boot/efi\tvfat\tumask=0077\t0\t2\n", espUUID)
	}
	fstab := filepath.Join(etc, "fstab")
	if old, err := os.ReadFile(fstab); err == nil {
		for _, line := range strings.Split(string(old), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 || strings.HasPrefix(f[0], "#") || f[1] == "/" || f[1] == "/boot/efi" {
				continue
			}
			b.WriteString(line + "\n")
		}
	}
	if err := replaceAdapted(etc, "fstab", b.String(), 0o644, t); err != nil {
		return err
	}
	if espUUID == "" {
		return nil
	}
	boot, err := mkdirIn(root, "/boot", t)
	if err != nil {
		return err
	}
	efi := filepath.Join(boot, "efi")
	if st, err := os.Lstat(efi); err == nil {
		if !st.IsDir() {
			return fmt.Errorf("/boot/efi is not a directory: the EFI system partition is mounted there")
		}
		return nil
	}
	return keepTimes(boot, func() error {
		if err := os.Mkdir(efi, 0o755); err != nil {
			return err
		}
		return os.Chtimes(efi, t, t)
	})
}

// mkdirIn resolves the directory p (a top-level one, such as /etc) in
// the image at root and makes it, dated t, when it is missing.
func mkdirIn(root, p string, t time.Time) (string, error) {
	dir, err := resolveIn(root, p)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.Mkdir(dir, 0o755); err != nil {
			return "", err
		}
		return dir, os.Chtimes(dir, t, t)
	case err != nil:
		return "", err
	case !st.IsDir():
		return "", fmt.Errorf("%s is not a directory", p)
	}
	return dir, nil
}

// replaceFile writes the file name in the directory dir (a resolved host
// path) with content and mode, dated t, replacing whatever was there (a
// symlink included), and keeps dir's times.
func replaceAdapted(dir, name, content string, mode os.FileMode, t time.Time) error {
	return keepTimes(dir, func() error {
		file := filepath.Join(dir, name)
		os.Remove(file)
		if err := os.WriteFile(file, []byte(content), mode); err != nil {
			return err
		}
		if err := os.Chmod(file, mode); err != nil { // whatever the umask
			return err
		}
		return os.Chtimes(file, t, t)
	})
}

// keepTimes runs change, which changes things in dir, and then puts
// back dir's access and modification times.
func keepTimes(dir string, change func() error) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if err := change(); err != nil {
		return err
	}
	atime := st.ModTime()
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		atime = time.Unix(s.Atim.Sec, s.Atim.Nsec)
	}
	return os.Chtimes(dir, atime, st.ModTime())
}

// espHook keeps the kernel and initrd that the boot loaders start, the
// copies on the EFI system partition, those of the newest kernel in
// /boot after the image is booted and updated: without it a VM that
// installs a kernel update boots the old kernel forever. It runs as a
// kernel hook (after initramfs-tools' own) and as an initramfs-tools
// hook, and copies only a kernel whose initrd exists, so that the pair
// on the ESP always matches.
const espHook = `#!/bin/sh
# Written by fgimg into its disk images. The boot loaders start
# /boot/efi/vmlinuz and /boot/efi/initrd.img: after a kernel or initrd
# changes, copy in those of the newest kernel in /boot. Remove this file
# (in /etc/kernel/postinst.d, /etc/kernel/postrm.d and
# /etc/initramfs/post-update.d) to manage /boot/efi yourself.
set -e
esp=/boot/efi
[ -f "$esp/vmlinuz" ] || exit 0
newest=
for k in /boot/vmlinuz-*; do
	[ -f "$k" ] || continue
	v=${k#/boot/vmlinuz-}
	if [ -z "$newest" ] || [ "$(printf '%s\n%s\n' "$newest" "$v" | sort -V | tail -n 1)" = "$v" ]; then
		newest=$v
	fi
done
[ -n "$newest" ] || exit 0
initrd=/boot/initrd.img-$newest
if [ -f "$esp/initrd.img" ] && [ ! -f "$initrd" ]; then
	exit 0 # not made yet: initramfs-tools runs this again when it is
fi
same() { cmp -s "$1" "$2" 2>/dev/null; }
if same "/boot/vmlinuz-$newest" "$esp/vmlinuz" && { [ ! -f "$initrd" ] || same "$initrd" "$esp/initrd.img"; }; then
	exit 0
fi
cp "/boot/vmlinuz-$newest" "$esp/vmlinuz.new"
[ ! -f "$initrd" ] || cp "$initrd" "$esp/initrd.img.new"
sync
mv -f "$esp/vmlinuz.new" "$esp/vmlinuz"
[ ! -f "$initrd" ] || mv -f "$esp/initrd.img.new" "$esp/initrd.img"
# The kernel version the boot menus show.
for f in "$esp/loader/entries/fgimg.conf" "$esp/syslinux/syslinux.cfg"; do
	if [ -f "$f" ]; then
		sed -i -e "s/^version .*/version $newest/" -e "s/, kernel [^ ]*\$/, kernel $newest/" "$f"
	fi
done
echo "fgimg: /boot/efi now boots kernel $newest" >&2
`

// espHookPaths are where espHook goes in the image.
var espHookPaths = []string{
	"/etc/kernel/postinst.d/zz-fgimg-esp",
	"/etc/kernel/postrm.d/zz-fgimg-esp",
	"/etc/initramfs/post-update.d/zz-fgimg-esp",
}

// writeESPHook writes espHook into the image at root, dated t, creating
// the hook directories (dated t) where the image has none.
func writeESPHook(root string, t time.Time) error {
	for _, p := range espHookPaths {
		dir := "/"
		for _, name := range strings.Split(strings.TrimPrefix(path.Dir(p), "/"), "/") {
			parent, err := resolveIn(root, dir)
			if err != nil {
				return err
			}
			dir = path.Join(dir, name)
			if err := keepTimes(parent, func() error { _, err := mkdirIn(root, dir, t); return err }); err != nil {
				return fmt.Errorf("making %s: %w", dir, err)
			}
		}
		parent, err := resolveIn(root, dir)
		if err != nil {
			return err
		}
		if err := replaceAdapted(parent, path.Base(p), espHook, 0o755, t); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}
