package sandbox

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The seccomp filter follows the container runtimes' default profiles in
// spirit, as a deny-list: system calls that reach the host kernel's global
// state (mounting, modules, kexec, reboot, swap, the clock, keyrings, BPF,
// perf, accounting), that inspect other processes (ptrace and its
// relatives), or that create or join namespaces fail with EPERM. clone3
// fails with ENOSYS, so that C libraries fall back to clone, whose flags
// the filter can check. System calls of an architecture the filter does
// not know kill the process.

// seccompABI is one system call ABI the filter recognises: its audit
// architecture and the numbers of the system calls it denies.
type seccompABI struct {
	arch   uint32
	denied []uint32
	clone  uint32 // clone, allowed without namespace flags
	clone3 uint32 // 0: the ABI has none
	x32    bool   // reject the x32 ABI's numbers (x86_64 only)
}

// BPF return values and the seccomp_data offsets the filter reads.
const (
	retAllow  = unix.SECCOMP_RET_ALLOW
	retKill   = unix.SECCOMP_RET_KILL_PROCESS
	retEPERM  = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)

	offNr   = 0
	offArch = 4
	offArg0 = 16 // low half of args[0] on little-endian machines

	x32Bit = 0x40000000

	// cloneNamespaces are the namespace flags of clone(2).
	cloneNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
		unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET
)

func stmt(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }

func jump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// seccompProgram assembles the filter for the given ABIs, the first being
// the native one.
func seccompProgram(abis []seccompABI) []unix.SockFilter {
	const (
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ja   = unix.BPF_JMP | unix.BPF_JA
		ret  = unix.BPF_RET | unix.BPF_K
	)
	var segments [][]unix.SockFilter
	for _, abi := range abis {
		var s []unix.SockFilter
		s = append(s, stmt(ldW, offNr))
		if abi.x32 {
			s = append(s, jump(jge, x32Bit, 0, 1), stmt(ret, retENOSYS))
		}
		for _, nr := range abi.denied {
			s = append(s, jump(jeq, nr, 0, 1), stmt(ret, retEPERM))
		}
		if abi.clone3 != 0 {
			s = append(s, jump(jeq, abi.clone3, 0, 1), stmt(ret, retENOSYS))
		}
		s = append(s,
			jump(jeq, abi.clone, 0, 3),
			stmt(ldW, offArg0),
			jump(jset, cloneNamespaces, 0, 1),
			stmt(ret, retEPERM),
			stmt(ret, retAllow))
		segments = append(segments, s)
	}
	// The dispatch on the architecture: for each ABI a test and a jump
	// to its segment, then a kill for any other architecture.
	prog := []unix.SockFilter{stmt(ldW, offArch)}
	dispatch := len(prog)
	prog = append(prog, make([]unix.SockFilter, 2*len(abis))...)
	prog = append(prog, stmt(ret, retKill))
	for i, abi := range abis {
		at := dispatch + 2*i
		prog[at] = jump(jeq, abi.arch, 0, 1)
		// ja's offset counts from the instruction after it.
		prog[at+1] = stmt(ja, uint32(len(prog)-(at+2)))
		prog = append(prog, segments[i]...)
	}
	return prog
}

// installSeccomp sets no_new_privs (required to install a filter without
// CAP_SYS_ADMIN, and it keeps setuid binaries from gaining privileges)
// and installs the filter on the calling thread, from which the command
// inherits it.
func installSeccomp() error {
	abis, err := seccompABIs()
	if err != nil {
		return err
	}
	prog := seccompProgram(abis)
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("setting no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0); err != nil {
		return fmt.Errorf("installing the seccomp filter: %w", err)
	}
	return nil
}
