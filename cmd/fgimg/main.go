// Command fgimg compiles image templates into a stage graph and builds
// root filesystems, VM disks and netboot images from them.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/fgimg/fgimg/stages/sandbox"
)

func main() {
	sandbox.Init() // when this process is a sandbox's init, it does its job and exits here
	os.Exit(runMain(run, os.Args[1:], os.Stdout, os.Stderr))
}

// interrupted is the cause of a context cancelled by a signal.
type interrupted struct{ sig os.Signal }

func (i interrupted) Error() string { return "interrupted by " + i.sig.String() }

// signalCode is the shell's code for a process a signal stopped: 128+n.
func signalCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return exitFailed
}

// interruptedCode returns the exit code of a command that stopped
// because ctx was cancelled by a signal, or exitFailed.
func interruptedCode(ctx context.Context) int {
	if i, ok := context.Cause(ctx).(interrupted); ok {
		return signalCode(i.sig)
	}
	return exitFailed
}

// runMain runs one command (with run) under the CLI's handling of
// signals and crashes. SIGINT and SIGTERM cancel the command's context; a command
// that holds nothing to clean up (it only reads) is ended at once with
// 130 or 143. A panic is reported as a bug with exit code 70, never the
// 2 of a usage error.
func runMain(run func(ctx context.Context, args []string, out, errw io.Writer) int, args []string, out, errw io.Writer) (code int) {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	atOnce := endsAtOnce(args)
	go func() {
		for sig := range sigs {
			if atOnce {
				fmt.Fprintf(errw, "\nfgimg: %s: stopped.\n", sig)
				os.Exit(signalCode(sig))
			}
			cancel(interrupted{sig})
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(errw, "\nfgimg: internal error: %v\n\nThis is a bug in fgimg, not a problem with your templates: please report it with this output.\n\n%s", r, debug.Stack())
			code = exitCrash
		}
	}()
	return run(ctx, args, out, errw)
}
