// Package proc starts host tools that must die with fgimg.
//
// Linux delivers a parent death signal (PR_SET_PDEATHSIG) when the
// thread that forked the child exits, not the process. The Go runtime
// discards threads (a goroutine that ends while locked to its thread,
// as the sandbox's mount helpers do), so a child started from an
// arbitrary thread can be killed in the middle of its work while fgimg
// runs on. Start keeps the forking thread locked to one goroutine until
// the child has been reaped.
package proc

import (
	"os/exec"
	"runtime"
	"syscall"
)

// Start starts cmd with SIGKILL as its parent death signal. The result of
// cmd.Wait arrives on the returned channel; the caller must not call
// cmd.Wait itself.
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
		return nil, err
	}
	return waited, nil
}

// Run starts cmd as Start does and waits for it.
func Run(cmd *exec.Cmd) error {
	waited, err := Start(cmd)
	if err != nil {
		return err
	}
	return <-waited
}
