package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/fgimg/fgimg/internal/hosttool"
	"github.com/fgimg/fgimg/internal/shquote"
	"github.com/fgimg/fgimg/stages/sandbox"
)

const standardPath = sandbox.StandardPath

// newOutputTail passes a command's output on to the stage log and keeps
// its end, from which an error quotes the tool's own complaint.
func newOutputTail(log io.Writer) *hosttool.Tail { return &hosttool.Tail{W: log} }

// errorLines picks the lines of a tool's output that state its error.
type errorLines func(line string) bool

// linesWithPrefix picks lines starting with one of the prefixes.
func linesWithPrefix(prefixes ...string) errorLines {
	return func(l string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				return true
			}
		}
		return false
	}
}

// maxErrorLines bounds how many lines of a tool's output an error quotes.
const maxErrorLines = 5

// quote returns the last of t's lines that pick selects, or without any, the last
// few lines of output.
func quote(t *hosttool.Tail, pick errorLines) []string {
	lines := t.Lines()
	var picked []string
	if pick != nil {
		for _, l := range lines {
			if pick(l) {
				picked = append(picked, strings.TrimSpace(l))
			}
		}
	}
	if len(picked) == 0 {
		n := min(3, len(lines))
		for _, l := range lines[len(lines)-n:] {
			picked = append(picked, strings.TrimSpace(l))
		}
	}
	if len(picked) > maxErrorLines {
		picked = picked[len(picked)-maxErrorLines:]
	}
	return picked
}

// CommandError reports a command of a stage that ran and failed.
type CommandError struct {
	What   string   // the command in the user's terms, e.g. "apt-get install"
	Status string   // e.g. "exit status 100"
	Lines  []string // the tool's own error lines
	Err    error    // *sandbox.ExitError or *exec.ExitError
}

func (e *CommandError) Error() string {
	s := e.What + " failed (" + e.Status + ")"
	if len(e.Lines) > 0 {
		s += ": " + strings.Join(e.Lines, "; ")
	}
	return s
}

func (e *CommandError) Unwrap() error { return e.Err }

// commandFailed turns a command's error into one that names the command
// and quotes its output. Errors other than a failed exit (cancellation,
// a command that could not start) are wrapped with what alone.
func commandFailed(what string, err error, out *hosttool.Tail, pick errorLines) error {
	var status string
	var sbErr *sandbox.ExitError
	var exErr *exec.ExitError
	switch {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: %w", what, err)
	case errors.As(err, &sbErr):
		status = sbErr.Error()
	case errors.As(err, &exErr):
		status = exErr.String()
		if ws, ok := exErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			status = "signal: " + ws.Signal().String()
		}
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
	return &CommandError{What: what, Status: status, Lines: quote(out, pick), Err: err}
}

// network says whether a command inside the image gets outbound network
// access (sandbox.Spec.Network).
type network bool

const (
	offline network = false
	online  network = true
)

// runInImage runs args inside env.Root as inImage does, after logging
// them as "+ args".
func runInImage(ctx context.Context, env *Env, net network, what string, pick errorLines, extraEnv []string, args ...string) error {
	logCommand(env.Log, args)
	return inImage(ctx, env, net, what, pick, extraEnv, args...)
}

// inImage runs args inside env.Root (used as it is) through sandbox.Run;
// the command's output goes to the log. extraEnv adds to the sandbox's
// standard environment. A failure is explained: what names the command,
// pick selects the tool's error lines.
func inImage(ctx context.Context, env *Env, net network, what string, pick errorLines, extraEnv []string, args ...string) error {
	return sandboxed(ctx, env, what, pick, sandbox.Spec{Args: args, Env: extraEnv, Network: bool(net)})
}

// hostToolOnRoot runs the host tool (found with hosttool.Find) in the
// sandbox as inImage runs a command, but in a root of the host's system
// directories (read-only) with env.Root at bootstrapTarget (see
// sandbox.Spec.Target), and device nodes in its /dev with devices.
func hostToolOnRoot(ctx context.Context, env *Env, net network, devices bool, what string, pick errorLines, extraEnv []string, tool string, args ...string) error {
	path, err := hosttool.Find(tool)
	if err != nil {
		return err
	}
	if path, err = filepath.Abs(path); err != nil {
		return err
	}
	args = append([]string{path}, args...)
	logCommand(env.Log, args)
	return sandboxed(ctx, env, what, pick, sandbox.Spec{
		Args: args, Env: extraEnv, Network: bool(net),
		Target: bootstrapTarget, HostPaths: []string{path}, TargetDevices: devices,
	})
}

// sandboxed runs s with env.Root as its root filesystem, its output going
// to the log, and explains a failure.
func sandboxed(ctx context.Context, env *Env, what string, pick errorLines, s sandbox.Spec) error {
	out := newOutputTail(env.Log)
	s.Upper, s.Stdout, s.Stderr, s.MaxMemory, s.MaxCPUs = env.Root, out, out, env.MaxMemory, env.MaxCPUs
	if err := env.withRootsReleased(func() error { return sandbox.Run(ctx, s) }); err != nil {
		return commandFailed(what, err, out, pick)
	}
	return nil
}

// logCommand writes "+ args" to the log, as set -x would.
func logCommand(log io.Writer, args []string) {
	var b bytes.Buffer
	b.WriteString("+")
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(shquote.Quote(a))
	}
	b.WriteByte('\n')
	_, _ = log.Write(b.Bytes())
}
