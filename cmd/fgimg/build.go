package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"time"

	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/internal/outdir"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/stages"
	"github.com/fgimg/fgimg/stages/sandbox"
	"github.com/opencontainers/go-digest"
)

// buildFlags are build's flags. boot -build takes the same ones, so
// that the two cannot drift apart.
type buildFlags struct {
	configFlags
	remote remoteFlags
	outDir string
	jobs   int
	json   bool
	// stageTimeout stops a stage that runs longer; 0 means no limit.
	stageTimeout time.Duration
	stageMemory  string
	stageCPUs    float64
}

func (b *buildFlags) register(fs *flag.FlagSet) {
	b.configFlags.register(fs, true)
	b.remote.register(fs)
	fs.StringVar(&b.outDir, "o", "out", "each target's artifacts are in `DIR`/<target>/")
	fs.IntVar(&b.jobs, "j", runtime.NumCPU(), "build at most `N` stages at once")
	fs.BoolVar(&b.json, "json", false, "print one JSON build event per line, for CI")
	fs.DurationVar(&b.stageTimeout, "stage-timeout", stages.DefaultStageTimeout, "stop a stage that runs longer than `DURATION` (0: no limit)")
	fs.Float64Var(&b.stageCPUs, "stage-cpus", 0, "bound the CPU time of each command a stage runs to `N` CPUs' worth, such as 1.5 (default: no bound)")
	fs.StringVar(&b.stageMemory, "stage-memory", "", "bound the memory and swap of each command a stage runs to `SIZE`, such as 8GiB (default: 3/4 of the host's memory)")
}

func cmdBuild(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg build", flag.ContinueOnError)
	var bf buildFlags
	bf.register(fs)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: fgimg build [flags] [PATH]\n\nBuilds every image stage that is not cached and writes each target's\nartifacts and manifest.json to OUT/<target>/.\n\nFlags:")
		fs.PrintDefaults()
	}
	paths, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	code, _, _ := bf.build(ctx, paths, out, errw)
	return code
}

// build builds what the flags select in paths. It returns the exit code
// and, when the build succeeded, the configuration and plan it built.
func (bf buildFlags) build(ctx context.Context, paths []string, out, errw io.Writer) (int, *lang.Config, *planner.Plan) {
	cf := bf.configFlags // useCache below sets its store for this build only
	if bf.jobs < 1 {
		return flagResult(usageError{"-j must be at least 1"}, errw), nil, nil
	}
	stageTimeout := bf.stageTimeout
	if stageTimeout < 0 {
		return flagResult(usageError{"--stage-timeout must not be negative"}, errw), nil, nil
	}
	if stageTimeout == 0 {
		stageTimeout = -1 // the engine's "none"
	}
	var stageMemory int64
	if bf.stageMemory != "" {
		n, err := lang.ParseSize(bf.stageMemory)
		if err != nil {
			return flagResult(usageError{"--stage-memory: " + err.Error()}, errw), nil, nil
		}
		if n < 16<<20 {
			return flagResult(usageError{"--stage-memory must be at least 16MiB"}, errw), nil, nil
		}
		stageMemory = n
	}
	if bf.stageCPUs < 0 || bf.stageCPUs > 0 && bf.stageCPUs < 0.01 {
		return flagResult(usageError{"--stage-cpus must be 0 (no bound) or at least 0.01"}, errw), nil, nil
	}
	// Until it is known whether this process builds or runs itself again
	// in a private mount namespace (below), what it would say is held
	// back: the run inside says it all.
	if err := sandbox.Resume(); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed, nil, nil
	}
	held := &heldWriter{w: errw}
	defer held.flush()
	errw = held
	epoch, err := layer.EpochFromEnv()
	if err != nil {
		fmt.Fprintf(errw, "fgimg: SOURCE_DATE_EPOCH: %s\n", err)
		return exitUsage, nil, nil
	}
	store, err := openCache(cf.cacheDir, true, errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed, nil, nil
	}
	defer store.Close()
	if err := outdir.Outside(bf.outDir, store.Dir()); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed, nil, nil
	}
	defer cf.useCache(store)()
	cfg, plan := cf.load(paths, errw)
	if plan == nil {
		return exitFailed, nil, nil
	}
	repo, err := bf.remote.shared(store)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed, nil, nil
	}
	var prog *progress
	fetched := map[digest.Digest]bool{} // written by Report, one event at a time
	eng := &engine.Engine{
		Store:  store,
		Runner: &engine.Overlay{Store: store, Epoch: epoch, StageTimeout: stageTimeout, StageMemory: stageMemory, StageCPUs: bf.stageCPUs},
		Jobs:   bf.jobs,
		Out:    bf.outDir,
		Epoch:  epoch,
		Report: func(ev engine.Event) {
			if ev.Kind == engine.Pulled && ev.Stage.Node == planner.TargetWrite {
				fetched[ev.Stage.Digest] = true
			}
			prog.event(ev)
		},
		LogDir: filepath.Join(store.Dir(), "logs"),
	}
	if repo != nil {
		eng.Shared = repo
	}
	// Held until the catalog has read the stages' records.
	release, err := eng.Hold(plan)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed, nil, nil
	}
	defer release()
	// Building mounts overlays: that is done in a private mount
	// namespace, so that no mount outlives fgimg however it ends; Isolate
	// runs fgimg again inside one and does not return. A build with
	// nothing to mount (everything cached: a no-op) goes on here, which
	// saves starting fgimg twice.
	if !sandbox.Isolated() && eng.Mounts(plan) {
		held.discard()
		release()
		store.Close()
		if err := sandbox.Isolate(); err != nil {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
			return exitFailed, nil, nil
		}
	}
	held.flush()
	prog = newProgress(errw, bf.json, out, len(plan.Stages))
	err = eng.Build(ctx, plan)
	prog.finish(err)
	if err != nil {
		var f *engine.Failure
		if !errors.As(err, &f) {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
		}
		return exitFailed, nil, nil
	}
	if repo != nil {
		if err := repo.PullStacks(ctx, plan.Images); err != nil {
			fmt.Fprintf(errw, "fgimg: the software stacks were not pulled (the catalog reads them from the images): %s\n", err)
		}
		defer func() {
			if err := repo.PushStacks(ctx, plan.Images); err != nil {
				fmt.Fprintf(errw, "fgimg: the software stacks were not shared: %s\n", err)
			}
		}()
	}
	cb := &catalogBuild{store: store, eng: eng, cfg: cfg, plan: plan, out: bf.outDir, epoch: epoch, vars: cf.vars, fetched: fetched}
	if err := cb.record(ctx); err != nil {
		fmt.Fprintf(errw, "fgimg: recording the build in the catalog: %s\n", err)
		return exitFailed, nil, nil
	}
	return exitOK, cfg, plan
}

// heldWriter holds back what is written to it until flush, which writes
// it and everything after through to w, or discard, which drops it.
type heldWriter struct {
	w       io.Writer
	buf     bytes.Buffer
	through bool
}

func (h *heldWriter) Write(p []byte) (int, error) {
	if h.through {
		return h.w.Write(p)
	}
	return h.buf.Write(p)
}

func (h *heldWriter) flush() {
	if !h.through {
		h.through = true
		h.w.Write(h.buf.Bytes())
		h.buf.Reset()
	}
}

func (h *heldWriter) discard() { h.buf.Reset() }
