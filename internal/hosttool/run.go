package hosttool

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// KillDelay bounds the wait for a killed tool's output to end.
const KillDelay = 5 * time.Second

// Command returns the command that runs the host tool name (found with
// Find) with args: in its own process group, which is killed when ctx is
// done, and with Env() as its environment. Start it with Run or Start.
func Command(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	path, err := Find(name)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = Env()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = KillDelay
	return cmd, nil
}

// Unsynced is Command for a tool that writes only a scratch file: it runs
// under eatmydata when the host has it, so that its fsync and sync calls
// do nothing. The artifact is made durable once, when the cache stores
// it; mkfs.ext4's final flush of a multi-GB file, or syslinux's sync of
// every dirty page on the machine, would only add seconds.
func Unsynced(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	path, err := Find(name)
	if err != nil {
		return nil, err
	}
	if eat, err := Find("eatmydata"); err == nil {
		return Command(ctx, eat, append([]string{path}, args...)...)
	}
	return Command(ctx, path, args...)
}

// Start starts cmd with SIGKILL as its parent death signal; the result
// of cmd.Wait arrives on the channel (the caller must not call cmd.Wait
// itself).
//
// Linux delivers a parent death signal when the thread that forked the
// child exits, not the process, and the Go runtime discards threads (a
// goroutine that ends while locked to its thread, as the sandbox's mount
// helpers do): a child started from an arbitrary thread could be killed
// in the middle of its work while fgimg runs on. So the forking thread
// stays locked to one goroutine until the child has been reaped.
func Start(cmd *exec.Cmd) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	waited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	return waited, nil
}

// Run runs cmd and waits for it. Whatever a Command left running in its
// process group is killed with it.
func Run(cmd *exec.Cmd) error {
	waited, err := Start(cmd)
	if err != nil {
		return err
	}
	err = <-waited
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.Setpgid {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	return err
}

// Env is fgimg's environment with StandardDirs added to PATH (bootstrap
// tools call chroot and other sbin programs) and extra appended.
func Env(extra ...string) []string {
	env := os.Environ()
	found := false
	for i, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			env[i], found = kv+":"+strings.Join(StandardDirs, ":"), true
		}
	}
	if !found {
		env = append(env, "PATH="+strings.Join(StandardDirs, ":"))
	}
	return append(env, extra...)
}

// CleanEnv is a minimal environment for a tool whose output must not
// depend on the caller's: PATH (as Env sets it), LC_ALL=C, TMPDIR if
// set, and extra.
func CleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range Env() {
		if strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	env = append(env, "LC_ALL=C")
	return append(env, extra...)
}
