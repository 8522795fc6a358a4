package targets

import (
	"fmt"
	"path"
	"strings"
	"time"
)

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
			parent, err := diskResolve(root, dir)
			if err != nil {
				return err
			}
			dir = path.Join(dir, name)
			if err := keepTimes(parent, func() error { _, err := mkdirIn(root, dir, t); return err }); err != nil {
				return fmt.Errorf("making %s: %w", dir, err)
			}
		}
		parent, err := diskResolve(root, dir)
		if err != nil {
			return err
		}
		if err := replaceFile(parent, path.Base(p), espHook, 0o755, t); err != nil {
			return fmt.Errorf("writing %s: %w", p, err)
		}
	}
	return nil
}
