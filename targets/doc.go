// Package targets turns a built root filesystem into artifacts: root
// filesystem tarballs, OCI image layouts, raw and qcow2 disks and netboot
// kernel plus initramfs.
package targets
