package sandbox

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// keptCaps is the capability set of commands, Docker's default without
// CAP_MKNOD (in a user namespace mknod of a device fails anyway). The
// capabilities hold only inside the command's user namespace.
var keptCaps = []uintptr{
	unix.CAP_CHOWN, unix.CAP_DAC_OVERRIDE, unix.CAP_FOWNER, unix.CAP_FSETID,
	unix.CAP_KILL, unix.CAP_SETGID, unix.CAP_SETUID, unix.CAP_SETPCAP,
	unix.CAP_SETFCAP, unix.CAP_NET_BIND_SERVICE, unix.CAP_NET_RAW,
	unix.CAP_SYS_CHROOT, unix.CAP_AUDIT_WRITE,
}

// KeptCapabilities returns the capability mask commands run with, as
// /proc/PID/status shows it (CapEff, CapBnd).
func KeptCapabilities() uint64 {
	var m uint64
	for _, c := range keptCaps {
		m |= 1 << c
	}
	return m
}

// confineThread confines the calling thread, and so the command it
// starts: it shrinks the capability bounding set, the permitted,
// effective and inheritable sets and the ambient set to keptCaps, sets
// no_new_privs and installs the seccomp filter. Capabilities, bounding
// set and filter are per thread: the init's other threads keep theirs
// for cleaning up.
func confineThread() error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	keep := KeptCapabilities()
	for c := uintptr(0); c <= last; c++ {
		if keep&(1<<c) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0); err != nil {
			return fmt.Errorf("dropping capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clearing ambient capabilities: %w", err)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	for i := range data {
		m := uint32(keep >> (32 * i))
		data[i] = unix.CapUserData{Effective: m, Permitted: m, Inheritable: m}
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("setting capabilities: %w", err)
	}
	return installSeccomp()
}

// lastCap returns the highest capability the kernel knows.
func lastCap() (uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("reading cap_last_cap: %q", b)
	}
	return uintptr(n), nil
}
