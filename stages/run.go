package stages

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"time"
)

// Env is where one stage runs.
type Env struct {
	// Root is the root filesystem to fill or change. Origin stages
	// (bootstrap, from) get an empty directory; the others get a mounted
	// overlay whose lower layers are the stages below and whose upper
	// directory captures the changes.
	Root string
	// Log receives the stage's full log: every command's stdout and
	// stderr, plus fgimg's own notes ("+ command" lines). Nil discards.
	Log io.Writer
	// Arch is the image architecture, e.g. "amd64".
	Arch string
	// Timeout bounds the stage's run time: zero means
	// DefaultStageTimeout, a negative value no bound.
	Timeout time.Duration
	// MaxMemory bounds the memory (and swap) of each command run in the
	// image, in bytes: zero means sandbox.DefaultMaxMemory().
	MaxMemory int64
	// MaxCPUs bounds the CPU time of each command run in the image to
	// that many CPUs' worth: zero means no bound.
	MaxCPUs float64
	// Epoch is the build's SOURCE_DATE_EPOCH, nil without one: the time
	// stages write where a file format wants one (the Java keystore).
	Epoch *time.Time

	roots []*root // the stage's open roots (openRoot)
}

// DefaultStageTimeout is the stage timeout unless Env.Timeout sets
// another: generous, for a large package installation from a slow
// mirror, yet a hung command does not block a build forever.
const DefaultStageTimeout = 3 * time.Hour

// TimeoutError reports a stage stopped by its timeout.
type TimeoutError struct{ Timeout time.Duration }

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("stopped after %s, the stage timeout (fgimg build --stage-timeout sets another; 0 means none)", e.Timeout)
}

// Result is what a stage reports beside its layer.
type Result struct {
	// Info is recorded in the cache record, e.g. "manifest_digest" for
	// from.
	Info map[string]string
}

// Run runs one stage: it dispatches on the spec's type. Commands inside
// the image run through sandbox.Run, so the calling binary must have
// called sandbox.Init, and needs root or sandbox.Isolate. Cancelling ctx
// stops the stage promptly; the root filesystem is then left half done.
func Run(ctx context.Context, spec Spec, env *Env) (Result, error) {
	if spec == nil || reflect.ValueOf(spec).Kind() == reflect.Pointer && reflect.ValueOf(spec).IsNil() {
		return Result{}, errors.New("stages: no stage to run")
	}
	if env == nil || env.Root == "" {
		return Result{}, fmt.Errorf("stages: %s stage: no root filesystem given", spec.Kind())
	}
	if fi, err := os.Stat(env.Root); err != nil {
		return Result{}, fmt.Errorf("stages: %s stage: %w", spec.Kind(), err)
	} else if !fi.IsDir() {
		return Result{}, fmt.Errorf("stages: %s stage: root filesystem %s is not a directory", spec.Kind(), env.Root)
	}
	e := *env
	if e.Log == nil {
		e.Log = io.Discard
	}
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("%s stage: %w", spec.Kind(), err)
	}
	timeout := e.Timeout
	if timeout == 0 {
		timeout = DefaultStageTimeout
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout, &TimeoutError{Timeout: timeout})
		defer cancel()
	}
	res, err := runKind(ctx, spec, &e)
	if err != nil {
		var te *TimeoutError
		if errors.As(context.Cause(ctx), &te) {
			fmt.Fprintf(e.Log, "fgimg: %v\n", err)
			err = te
		}
		return Result{}, fmt.Errorf("%s stage: %w", spec.Kind(), err)
	}
	return res, nil
}

// runKind dispatches on the spec's type.
func runKind(ctx context.Context, spec Spec, e *Env) (Result, error) {
	var err error
	switch s := spec.(type) {
	case *Bootstrap:
		err = runBootstrap(ctx, s, e)
	case *From:
		return runFrom(ctx, s, e)
	case *Packages:
		err = runPackages(ctx, s, e)
	case *Files:
		err = runFiles(ctx, s, e)
	case *Users:
		err = runUsers(ctx, s, e)
	case *Services:
		err = runServices(ctx, s, e)
	case *Script:
		err = runCommands(ctx, s, e)
	case *DiskAdapt:
		err = runDiskAdapt(ctx, s, e)
	case *CloudInit:
		err = runCloudInit(ctx, s, e)
	default:
		return Result{}, fmt.Errorf("stages: unknown stage kind %q (%T)", spec.Kind(), spec)
	}
	return Result{}, err
}
