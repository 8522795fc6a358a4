package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fgimg/fgimg/internal/proc"
	"github.com/fgimg/fgimg/stages/sandbox"
)

const standardPath = sandbox.StandardPath

// tailSize is how much of a command's output is kept for its error.
const tailSize = 64 << 10

// outputTail passes a command's output on to the stage log and keeps its
// end, from which an error quotes the tool's own complaint.
type outputTail struct {
	mu  sync.Mutex
	log io.Writer
	buf []byte
	cut bool // the start of the output was dropped
}

func newOutputTail(log io.Writer) *outputTail { return &outputTail{log: log} }

func (t *outputTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - tailSize; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return t.log.Write(p)
}

// lines returns the kept output's complete, non-blank lines, with
// carriage-return progress reduced to its last state.
func (t *outputTail) lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	all := strings.Split(string(t.buf), "\n")
	if t.cut {
		all = all[1:] // a partial line
	}
	var out []string
	for _, l := range all {
		if i := strings.LastIndexByte(strings.TrimRight(l, "\r"), '\r'); i >= 0 {
			l = l[i+1:]
		}
		l = strings.TrimRight(l, " \t\r")
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

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

// quote returns the last lines pick selects, or without any, the last
// few lines of output.
func (t *outputTail) quote(pick errorLines) []string {
	lines := t.lines()
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
func commandFailed(what string, err error, out *outputTail, pick errorLines) error {
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
	return &CommandError{What: what, Status: status, Lines: out.quote(pick), Err: err}
}

// network says whether a command inside the image gets outbound network
// access (sandbox.Spec.Network).
type network bool

const (
	offline network = false
	online  network = true
)

// inImage runs args inside env.Root (used as it is) through sandbox.Run,
// after logging them as "+ args"; the command's output goes to the log.
// extraEnv adds to the sandbox's standard environment.
func inImage(ctx context.Context, env *Env, net network, extraEnv []string, args ...string) (*outputTail, error) {
	logCommand(env.Log, args)
	out := newOutputTail(env.Log)
	err := sandbox.Run(ctx, sandbox.Spec{
		Upper: env.Root, Args: args, Env: extraEnv,
		Stdout: out, Stderr: out, Network: bool(net),
	})
	return out, err
}

// runInImage is inImage with the error explained: what names the
// command, pick selects the tool's error lines.
func runInImage(ctx context.Context, env *Env, net network, what string, pick errorLines, extraEnv []string, args ...string) error {
	out, err := inImage(ctx, env, net, extraEnv, args...)
	if err != nil {
		return commandFailed(what, err, out, pick)
	}
	return nil
}

// hostToolDirs are searched for host tools after PATH, which for a
// non-root user often lacks the sbin directories.
var hostToolDirs = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// findHostTool returns the path of a host tool, or an error saying how
// to install it.
func findHostTool(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range hostToolDirs {
		p := d + "/" + name
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed: apt-get install %s", name, pkg)
}

// hostKillDelay bounds the wait for a killed host tool's output to end.
const hostKillDelay = 5 * time.Second

// onHost runs a host tool writing into the root filesystem: in its own
// process group, killed with the group when ctx is done, and with a
// parent death signal so that it dies with fgimg. Output goes to the log.
func onHost(ctx context.Context, env *Env, what string, pick errorLines, path string, args ...string) error {
	logCommand(env.Log, append([]string{path}, args...))
	out := newOutputTail(env.Log)
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = hostEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = hostKillDelay
	err := proc.Run(cmd)
	if cmd.Process != nil {
		// Whatever the tool left running in its group goes with it.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: interrupted: %w", what, ctx.Err())
		}
		return commandFailed(what, err, out, pick)
	}
	return nil
}

// hostEnv is fgimg's environment with the standard directories added to
// PATH: bootstrap tools call chroot and other sbin programs.
func hostEnv() []string {
	env := os.Environ()
	for i, kv := range env {
		if strings.HasPrefix(kv, "PATH=") {
			env[i] = kv + ":" + standardPath
			return env
		}
	}
	return append(env, "PATH="+standardPath)
}

// logCommand writes "+ args" to the log, as set -x would.
func logCommand(log io.Writer, args []string) {
	var b bytes.Buffer
	b.WriteString("+")
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(shellQuote(a))
	}
	b.WriteByte('\n')
	_, _ = log.Write(b.Bytes())
}

// shellQuote quotes s for a POSIX shell when it needs quoting.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
