package sandbox

import "golang.org/x/sys/unix"

// On arm64 the filter knows the native ABI only: 32-bit programs are
// killed.
func seccompABIs() ([]seccompABI, error) {
	return []seccompABI{{
		arch: unix.AUDIT_ARCH_AARCH64, clone: unix.SYS_CLONE, clone3: unix.SYS_CLONE3,
		denied: commonDenied,
	}}, nil
}
