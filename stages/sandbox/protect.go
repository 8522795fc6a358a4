package sandbox

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Kernel files commands must not read or change, as the container
// runtimes' defaults have them: masked paths are hidden (files behind
// /dev/null, directories behind an empty read-only tmpfs), read-only
// paths are bound read-only onto themselves. Without shifted ids (fgimg
// run without root, whose user is the image's root) the sysctls in
// /proc/sys would otherwise be writable wherever that user may write them.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
		"/proc/sched_debug", "/proc/scsi", "/proc/kallsyms", "/proc/kmsg",
		"/sys/firmware", "/sys/devices/virtual/powercap", "/sys/kernel/debug",
		"/sys/kernel/security",
	}
	readOnlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// protectKernelFiles masks and write-protects the kernel files of the
// freshly mounted /proc and /sys. Paths this kernel lacks are skipped.
func (r *rootfs) protectKernelFiles() error {
	for _, p := range maskedPaths {
		fi, err := os.Lstat(r.path(p))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if fi.IsDir() {
			err = r.mount("tmpfs", p, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=0,mode=555")
		} else {
			err = r.mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil {
			return fmt.Errorf("masking %s: %w", p, err)
		}
	}
	for _, p := range readOnlyPaths {
		if _, err := os.Lstat(r.path(p)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err := r.mount(r.path(p), p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := remountReadOnly(r.path(p)); err != nil {
			return err
		}
	}
	return nil
}
