package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// isolatedEnv marks the re-executed, isolated program. Its value is the
// parent's mount namespace, so that a copy of the variable leaking into an
// unrelated process is not mistaken for isolation.
const isolatedEnv = "FGIMG_SANDBOX_ISOLATED"

// procSys is where the kernel's sysctls are read from.
const procSys = "/proc/sys"

var isolated bool

// ErrNotIsolated is returned by functions that need Isolate to have run.
var ErrNotIsolated = errors.New("sandbox: the process is not isolated in a private mount namespace (call sandbox.Isolate at the start of main)")

// Isolated reports whether Isolate has moved this process into a private
// mount namespace.
func Isolated() bool { return isolated }

// Resume finishes, in the process Isolate started, what Isolate does
// there, and does nothing elsewhere. A command that decides late whether
// it needs isolating calls it first, so that when it runs again inside
// the namespace it knows it is isolated.
func Resume() error {
	_, err := resume()
	return err
}

// resume marks the process isolated when Isolate started it in a mount
// namespace other than its starter's, and returns the process's own
// mount namespace.
func resume() (own string, err error) {
	if isolated {
		return "", nil
	}
	if own, err = os.Readlink("/proc/self/ns/mnt"); err != nil {
		return "", fmt.Errorf("sandbox: reading mount namespace: %w", err)
	}
	v, ok := os.LookupEnv(isolatedEnv)
	if !ok {
		return own, nil
	}
	os.Unsetenv(isolatedEnv)
	if v == own {
		return own, nil // inherited by a process that is not Isolate's
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return "", fmt.Errorf("sandbox: making mounts private: %w", err)
	}
	isolated = true
	return own, nil
}

// Isolate runs the program in a private mount namespace, so that mounts it
// makes (MountOverlay) disappear with it however it ends, and, when not
// run as root, in a user namespace in which the caller is root, so that
// Run and MountOverlay work without privileges.
//
// Call it early in main, after Init and before starting any work. In the
// original process Isolate re-executes the program with the same arguments
// and environment inside the new namespaces, forwards SIGINT and SIGTERM to
// it and exits with its exit status: on success it does not return. In the
// re-executed process it marks all mounts private and returns nil. It
// returns an error if the namespaces cannot be created, for example when
// unprivileged user namespaces are disabled.
//
// A SIGINT typed at a terminal already reaches the whole foreground
// process group, the re-executed program included, so Isolate forwards
// SIGINT only when the program is not in the terminal's foreground; other
// SIGINTs and all SIGTERMs are forwarded.
func Isolate() error {
	own, err := resume()
	if err != nil || isolated {
		return err
	}

	attr := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWNS,
		Pdeathsig:  syscall.SIGKILL,
	}
	if os.Geteuid() != 0 {
		if err := userNSStatus(procSys); err != nil {
			return fmt.Errorf("sandbox: cannot isolate fgimg without root: %w", err)
		}
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Args[0] = os.Args[0]
	cmd.Env = append(os.Environ(), isolatedEnv+"="+own)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = attr

	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	// The parent death signal is tied to the starting thread.
	runtime.LockOSThread()
	if err := cmd.Start(); err != nil {
		runtime.UnlockOSThread()
		signal.Stop(sigc)
		if attr.Cloneflags&syscall.CLONE_NEWUSER != 0 && errors.Is(err, syscall.EPERM) {
			return fmt.Errorf("sandbox: creating a user namespace was refused (%w); %s", err, userNSHint)
		}
		return fmt.Errorf("sandbox: re-executing in a private mount namespace: %w", err)
	}
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-sigc:
				if sig == syscall.SIGINT && inTerminalForeground() {
					continue // the child got it from the terminal too
				}
				_ = cmd.Process.Signal(sig)
			case <-done:
				return
			}
		}
	}()
	err = cmd.Wait()
	close(done)
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			os.Exit(128 + int(ws.Signal()))
		}
		os.Exit(exitErr.ExitCode())
	}
	fmt.Fprintf(os.Stderr, "fgimg: waiting for the isolated process: %v\n", err)
	os.Exit(1)
	return nil
}

// inTerminalForeground reports whether this process belongs to the
// foreground process group of its controlling terminal.
func inTerminalForeground() bool {
	f, err := os.Open("/dev/tty")
	if err != nil {
		return false
	}
	defer f.Close()
	pgrp, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil && pgrp == unix.Getpgrp()
}

const userNSHint = "enable unprivileged user namespaces " +
	"(sysctl -w kernel.unprivileged_userns_clone=1 on Debian kernels, " +
	"sysctl -w user.max_user_namespaces=15000, and on Ubuntu " +
	"sysctl -w kernel.apparmor_restrict_unprivileged_userns=0) or run fgimg as root"

// userNSStatus explains why unprivileged user namespaces are unavailable,
// reading the sysctls below sys (normally /proc/sys), or returns nil if
// nothing forbids them.
func userNSStatus(sys string) error {
	read := func(name string) (string, bool) {
		b, err := os.ReadFile(filepath.Join(sys, name))
		if err != nil {
			return "", false
		}
		return strings.TrimSpace(string(b)), true
	}
	var why []string
	if v, ok := read("kernel/unprivileged_userns_clone"); ok && v == "0" {
		why = append(why, "kernel.unprivileged_userns_clone is 0")
	}
	if v, ok := read("user/max_user_namespaces"); ok && v == "0" {
		why = append(why, "user.max_user_namespaces is 0")
	}
	if v, ok := read("kernel/apparmor_restrict_unprivileged_userns"); ok && v == "1" {
		why = append(why, "kernel.apparmor_restrict_unprivileged_userns is 1")
	}
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		why = append(why, "the kernel has no user namespace support")
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("unprivileged user namespaces are disabled (%s); %s", strings.Join(why, ", "), userNSHint)
}

// inUserNS reports whether the process runs in a user namespace other
// than the initial one.
func inUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}
