package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fgimgProcess starts fgimg as a real process (the test binary acting
// as main) in dir, with a cache of its own.
func fgimgProcess(t *testing.T, ctx context.Context, dir string, args ...string) (*exec.Cmd, *bytes.Buffer) {
	e := &env{t: t, dir: dir, cache: t.TempDir()}
	cmd := e.command(ctx, nil, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	return cmd, &stderr
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// TestHostileTemplatesNeitherCrashNorHang runs validate on generated
// templates that overflowed the Go stack (exit 2), or ran for minutes:
// each must end within its bound with a diagnostic, never with exit 2.
// The bounds leave room for a loaded CI machine (the 20,000 locals take
// about 1 s of CPU; the old code took 58 s, being quadratic).
func TestHostileTemplatesNeitherCrashNorHang(t *testing.T) {
	const n = 100000
	chain := func(images int) string {
		var b strings.Builder
		b.WriteString("image \"i0\" {\n  bootstrap \"debootstrap\" { suite = \"bookworm\" }\n}\n")
		for i := 1; i < images; i++ {
			fmt.Fprintf(&b, "image \"i%d\" {\n  parent = image.i%d\n  packages = [\"p%d\"]\n}\n", i, i-1, i)
		}
		return b.String()
	}
	locals := func(count int) string {
		var b strings.Builder
		b.WriteString("locals {\n  l0 = 1\n")
		for i := 1; i < count; i++ {
			fmt.Fprintf(&b, "  l%d = local.l%d + 1\n", i, i-1)
		}
		b.WriteString("}\n")
		return b.String()
	}
	tests := []struct {
		name     string
		template string
		code     int
		want     string
		bound    time.Duration
	}{
		{"nested parentheses", "locals {\n  x = " + strings.Repeat("(", n) + "1" + strings.Repeat(")", n) + "\n}\n", 1, "main.fg.hcl line 2", 20 * time.Second},
		{"nested lists", "locals {\n  x = " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n}\n", 1, "Expression nested too deeply", 20 * time.Second},
		{"chained negations", "locals {\n  x = " + strings.Repeat("!", n) + "true\n}\n", 1, "Expression nested too deeply", 20 * time.Second},
		{"chained conditionals", "locals {\n  x = " + strings.Repeat("true ? 1 : ", n) + "2\n}\n", 1, "Expression nested too deeply", 20 * time.Second},
		{"nested templates", "locals {\n  x = " + strings.Repeat(`"${`, n/10) + "1" + strings.Repeat(`}"`, n/10) + "\n}\n", 1, "Expression nested too deeply", 20 * time.Second},
		{"20,000 locals", locals(20000), 0, "", 10 * time.Second},
		{"10,000-image pedigree", chain(10000), 1, "Pedigree too deep", 30 * time.Second},
		{"oversized template", "locals {\n  x = \"" + strings.Repeat("a", 5<<20) + "\"\n}\n", 1, "Template too large", 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "main.fg.hcl"), tt.template)
			ctx, cancel := context.WithTimeout(context.Background(), 3*tt.bound)
			defer cancel()
			cmd, stderr := fgimgProcess(t, ctx, dir, "validate")
			start := time.Now()
			code := exitCode(t, cmd.Run())
			took := time.Since(start)
			if code != tt.code {
				t.Errorf("exit code %d, want %d; stderr:\n%.2000s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr does not mention %q:\n%.2000s", tt.want, stderr.String())
			}
			if took > tt.bound {
				t.Errorf("validate took %s, more than %s", took.Round(time.Millisecond), tt.bound)
			}
			t.Logf("took %s", took.Round(time.Millisecond))
		})
	}
}

// TestSignalsStopReadingCommands blocks validate and plan on a
// -var-file that is a pipe nobody writes to, then signals them: they
// must end promptly with the shell's code for the signal (the old code
// caught the signals and went on waiting).
func TestSignalsStopReadingCommands(t *testing.T) {
	for _, tt := range []struct {
		command string
		sig     syscall.Signal
		code    int
	}{
		{"validate", syscall.SIGINT, 130},
		{"plan", syscall.SIGTERM, 143},
	} {
		t.Run(tt.command, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "main.fg.hcl"), small)
			r, w, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd, stderr := fgimgProcess(t, ctx, dir, tt.command, "-var-file", "/dev/fd/3")
			cmd.ExtraFiles = []*os.File{r}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			r.Close()
			time.Sleep(time.Second) // let it reach the read
			start := time.Now()
			if err := cmd.Process.Signal(tt.sig); err != nil {
				t.Fatal(err)
			}
			code := exitCode(t, cmd.Wait())
			if code != tt.code {
				t.Errorf("exit code %d after %s, want %d; stderr:\n%s", code, tt.sig, tt.code, stderr.String())
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Errorf("stopping took %s", took)
			}
		})
	}
}

// TestPanicIsABugNotAUsageError: a panic in a command exits 70 with a
// message that says it is a bug, not with Go's exit code 2, which fgimg
// uses for usage errors.
func TestPanicIsABugNotAUsageError(t *testing.T) {
	var errw bytes.Buffer
	code := runMain(func(context.Context, []string, io.Writer, io.Writer) int {
		var m map[string]int
		m["x"] = 1 // a nil map: a runtime panic
		return exitOK
	}, []string{"validate"}, io.Discard, &errw)
	if code != exitCrash {
		t.Errorf("exit code %d, want %d", code, exitCrash)
	}
	for _, want := range []string{"internal error", "This is a bug in fgimg", "assignment to entry in nil map"} {
		if !strings.Contains(errw.String(), want) {
			t.Errorf("the report does not say %q:\n%s", want, errw.String())
		}
	}
}
