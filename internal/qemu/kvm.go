package qemu

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// KVM ioctls (linux/kvm.h): _IO(KVMIO, 0x00) and _IO(KVMIO, 0x01).
const (
	kvmGetAPIVersion = 0xAE00
	kvmCreateVM      = 0xAE01
	kvmAPIVersion    = 12 // the only stable version there has ever been
)

// CheckKVM reports whether QEMU can use KVM on this machine: nil when it
// can, else why not.
func CheckKVM() error {
	return probeKVM("/dev/kvm", "/proc/cpuinfo", "/sys/module")
}

// probeKVM opens dev and asks it for its API version and a VM. That is
// not enough: some hosts (kvm_pvm, in particular, which runs only guest
// kernels built for PVM) give a /dev/kvm that answers both while QEMU's
// guests never get past their first steps. So the CPU must also offer
// hardware virtualization (vmx or svm in cpuinfo), as every hardware
// KVM backend needs.
func probeKVM(dev, cpuinfo, modules string) error {
	fd, err := unix.Open(dev, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	defer unix.Close(fd)
	v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion)
	if err != nil {
		return fmt.Errorf("%s: KVM_GET_API_VERSION: %w", dev, err)
	}
	if v != kvmAPIVersion {
		return fmt.Errorf("%s: KVM API version %d, want %d", dev, v, kvmAPIVersion)
	}
	vm, err := unix.IoctlRetInt(fd, kvmCreateVM)
	if err != nil {
		return fmt.Errorf("%s: KVM_CREATE_VM: %w", dev, err)
	}
	unix.Close(vm)
	b, err := os.ReadFile(cpuinfo)
	if err != nil {
		return fmt.Errorf("checking for hardware virtualization: %w", err)
	}
	if !hasVirtFlag(string(b)) {
		msg := "the CPU offers no hardware virtualization (no vmx or svm flag in " + cpuinfo + ")"
		if _, err := os.Stat(modules + "/kvm_pvm"); err == nil {
			msg += "; this KVM is kvm_pvm, which runs only PVM guest kernels"
		}
		return errors.New(msg)
	}
	return nil
}

// hasVirtFlag reports whether a /proc/cpuinfo text lists vmx or svm.
func hasVirtFlag(cpuinfo string) bool {
	for _, line := range strings.Split(cpuinfo, "\n") {
		name, flags, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) != "flags" {
			continue
		}
		for _, f := range strings.Fields(flags) {
			if f == "vmx" || f == "svm" {
				return true
			}
		}
	}
	return false
}
