package stages

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/stages/sandbox"
)

func TestRunCommandsInOrder(t *testing.T) {
	root := busyboxRoot(t)
	log := mustRunStage(t, &Script{Commands: []string{
		"echo one >> /tmp/order",
		"echo two >> /tmp/order; echo to-stdout",
		"echo to-stderr >&2; echo $PATH > /tmp/path",
	}}, root)
	if got := readRootFile(t, root, "tmp/order"); got != "one\ntwo\n" {
		t.Errorf("/tmp/order = %q", got)
	}
	if got := readRootFile(t, root, "tmp/path"); got != sandbox.StandardPath+"\n" {
		t.Errorf("PATH = %q", got)
	}
	want := "+ echo one >> /tmp/order\n" +
		"+ echo two >> /tmp/order; echo to-stdout\nto-stdout\n" +
		"+ echo to-stderr >&2; echo $PATH > /tmp/path\nto-stderr\n"
	if log != want {
		t.Errorf("log:\n%s\nwant:\n%s", log, want)
	}
}

func TestRunStopsAtFirstFailure(t *testing.T) {
	root := busyboxRoot(t)
	log, err := runStage(t, &Script{Commands: []string{
		"echo one >> /tmp/order",
		"echo 'cannot frobnicate' >&2; exit 3",
		"echo three >> /tmp/order",
	}}, root)
	want := `run stage: command 2 of 3 "echo 'cannot frobnicate' >&2; exit 3" failed (exit status 3): cannot frobnicate`
	if err == nil || err.Error() != want {
		t.Fatalf("got error %v\nwant %s", err, want)
	}
	var exit *sandbox.ExitError
	if !errors.As(err, &exit) || exit.Code != 3 {
		t.Errorf("error does not wrap the exit status 3: %#v", err)
	}
	if got := readRootFile(t, root, "tmp/order"); got != "one\n" {
		t.Errorf("/tmp/order = %q: commands ran after the failure", got)
	}
	if strings.Contains(log, "three") {
		t.Errorf("the log shows commands after the failure:\n%s", log)
	}
}

func TestRunCancelled(t *testing.T) {
	root := busyboxRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := runStageCtx(t, ctx, &Script{Commands: []string{"sleep 60", "touch /tmp/after"}}, root)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled run: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the stage took %s to stop", d)
	}
	if exists(root, "tmp/after") {
		t.Error("a command ran after cancellation")
	}
}

func TestRunWithoutShell(t *testing.T) {
	requireRoot(t)
	_, err := runStage(t, &Script{Commands: []string{"true"}}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "the image has no /bin/sh") {
		t.Errorf("got %v", err)
	}
}

func TestRunStageTimeout(t *testing.T) {
	root := busyboxRoot(t)
	start := time.Now()
	_, err := Run(context.Background(), &Script{Commands: []string{"sleep 1000", "touch /tmp/after"}},
		&Env{Root: root, Timeout: 500 * time.Millisecond})
	var te *TimeoutError
	if !errors.As(err, &te) || te.Timeout != 500*time.Millisecond {
		t.Fatalf("err = %v; want a *TimeoutError", err)
	}
	want := "run stage: stopped after 500ms, the stage timeout (fgimg build --stage-timeout sets another; 0 means none)"
	if err.Error() != want {
		t.Errorf("error %q\nwant %q", err, want)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the stage took %s to stop", d)
	}
	if exists(root, "tmp/after") {
		t.Error("a command ran after the timeout")
	}
}

// A run stage has the network only when the image asks for it.
func TestRunNetworkSwitch(t *testing.T) {
	root := busyboxRoot(t)
	probe := "busybox ip route > /tmp/routes"
	mustRunStage(t, &Script{Commands: []string{probe}}, root)
	if got := readRootFile(t, root, "tmp/routes"); got != "" {
		t.Errorf("routes without the network:\n%s", got)
	}
	mustRunStage(t, &Script{Commands: []string{probe}, Network: true}, root)
	if got := readRootFile(t, root, "tmp/routes"); !strings.HasPrefix(got, "default via ") {
		t.Errorf("no default route with network = true:\n%s", got)
	}
}

func TestRunForkBombStopped(t *testing.T) {
	root := busyboxRoot(t)
	_, err := runStage(t, &Script{Commands: []string{"bomb() { bomb | bomb & }; bomb; sleep 1000"}}, root)
	var pl *sandbox.ProcessLimitError
	if !errors.As(err, &pl) || !strings.Contains(err.Error(), `command 1 of 1 "bomb() { bomb | bomb & }; bomb; sleep 1000": stopped: the command reached the limit of 4096 processes`) {
		t.Fatalf("err = %v; want the process limit named", err)
	}
}
