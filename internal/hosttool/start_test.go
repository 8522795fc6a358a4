package hosttool_test

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
	"testing"

	"github.com/fgimg/fgimg/internal/hosttool"
)

// churnThreads discards OS threads until stop is closed: each goroutine
// ends while locked to its thread, so the runtime destroys the thread.
func churnThreads(stop <-chan struct{}, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		select {
		case <-stop:
			return
		default:
		}
		done := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			close(done)
		}()
		<-done
	}
}

// A child started by Run (through Start) survives the runtime discarding threads: a
// child started from a discarded thread would die of SIGKILL.
func TestRunSurvivesDiscardedThreads(t *testing.T) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go churnThreads(stop, &wg)
	}
	defer func() { close(stop); wg.Wait() }()

	var runs sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		runs.Add(1)
		go func() {
			defer runs.Done()
			errs <- hosttool.Run(exec.Command("sleep", "0.2"))
		}()
	}
	runs.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("child killed while fgimg ran on: %v", err)
		}
	}
}

func TestStartError(t *testing.T) {
	if _, err := hosttool.Start(exec.Command("/nonexistent/tool")); err == nil {
		t.Fatal("starting a missing tool succeeded")
	}
}

func TestRunExitStatus(t *testing.T) {
	err := hosttool.Run(exec.Command("sh", "-c", "exit 3"))
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("Run = %v, want exit status 3", err)
	}
}
