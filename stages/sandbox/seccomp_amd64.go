package sandbox

import "golang.org/x/sys/unix"

// Numbers of the denied system calls on x86_64 and, for 32-bit programs
// an image may hold, on i386.
func seccompABIs() ([]seccompABI, error) {
	native := seccompABI{
		arch: unix.AUDIT_ARCH_X86_64, clone: unix.SYS_CLONE, clone3: unix.SYS_CLONE3, x32: true,
		denied: append(append([]uint32{}, commonDenied...),
			unix.SYS_CREATE_MODULE, unix.SYS_GET_KERNEL_SYMS, unix.SYS_QUERY_MODULE,
			unix.SYS_IOPL, unix.SYS_IOPERM, unix.SYS_USELIB, unix.SYS__SYSCTL),
	}
	i386 := seccompABI{
		arch: unix.AUDIT_ARCH_I386, clone: 120, clone3: 435,
		denied: []uint32{
			21, 22, 52, 217, // mount, umount, umount2, pivot_root
			430, 431, 432, 433, 429, 428, 442, // fsopen ... mount_setattr
			310, 346, // unshare, setns
			283, 88, // kexec_load, reboot
			128, 350, 129, 127, 130, 167, // modules
			357, 336, 374, // bpf, perf_event_open, userfaultfd
			288, 286, 287, // keyctl, add_key, request_key
			87, 115, 51, 131, 443, // swapon, swapoff, acct, quotactl, quotactl_fd
			79, 25, 264, 404, 343, 405, 124, // settimeofday, stime, clock_settime(64), clock_adjtime(64), adjtimex
			26, 347, 348, 349, 438, // ptrace, process_vm_readv/writev, kcmp, pidfd_getfd
			342, 253, 103, // open_by_handle_at, lookup_dcookie, syslog
			110, 101, 86, 111, 113, 166, // iopl, ioperm, uselib, vhangup, vm86old, vm86
			149, 169, // _sysctl, nfsservctl
		},
	}
	return []seccompABI{native, i386}, nil
}
