package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"runtime"

	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/stages/sandbox"
)

func cmdBuild(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg build", flag.ContinueOnError)
	var cf configFlags
	cf.register(fs, true)
	outDir := fs.String("o", "out", "write each target's artifacts to `DIR`/<target>/")
	jobs := fs.Int("j", runtime.NumCPU(), "build at most `N` stages at once")
	asJSON := fs.Bool("json", false, "print one JSON event per line, for CI")
	fs.Usage = func() {
		fmt.Fprintln(errw, "Usage: fgimg build [flags] [PATH]\n\nBuilds every image stage that is not cached and writes each target's\nartifacts and manifest.json to OUT/<target>/.\n\nFlags:")
		fs.PrintDefaults()
	}
	paths, err := parseFlags(fs, args, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if *jobs < 1 {
		return flagResult(usageError{"-j must be at least 1"}, errw)
	}
	// Building mounts overlays: do it in a private mount namespace, so
	// that no mount outlives fgimg however it ends. In the calling
	// process Isolate runs fgimg again inside one and does not return.
	if err := sandbox.Isolate(); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	epoch, err := layer.EpochFromEnv()
	if err != nil {
		fmt.Fprintf(errw, "fgimg: SOURCE_DATE_EPOCH: %s\n", err)
		return exitUsage
	}
	store, err := openCache(cf.cacheDir, true)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	defer store.Close()
	defer cf.useCache(store)()
	_, plan := cf.load(paths, errw)
	if plan == nil {
		return exitFailed
	}
	prog := newProgress(errw, *asJSON, out, len(plan.Stages))
	eng := &engine.Engine{
		Store:  store,
		Runner: &engine.Overlay{Store: store, Epoch: epoch},
		Jobs:   *jobs,
		Out:    *outDir,
		Epoch:  epoch,
		Report: prog.event,
		LogDir: filepath.Join(store.Dir(), "logs"),
	}
	err = eng.Build(ctx, plan)
	prog.finish(err)
	if err != nil {
		var f *engine.Failure
		if !errors.As(err, &f) {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
		}
		return exitFailed
	}
	return exitOK
}
