// Package engine builds a plan: it walks the stage graph, runs each
// stage that is not cached on an overlay of the stages below it, stores
// the result as a layer in the cache, and exports targets' artifacts.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/stages"
	"github.com/fgimg/fgimg/stages/sandbox"
	"github.com/opencontainers/go-digest"
)

// LayerMediaType is the media type of stage results: uncompressed OCI layers.
const LayerMediaType = "application/vnd.oci.image.layer.v1.tar"

// Engine builds plans into a cache and exports targets into Out.
type Engine struct {
	Store *cache.Store
	Jobs  int
	// Out is where targets are written, OUT/<target>/; empty: not exported.
	Out string
	// Epoch clamps file times in layers and artifacts (SOURCE_DATE_EPOCH).
	Epoch *time.Time
	// Report receives progress events; it is called from several
	// goroutines, one event at a time.
	Report func(Event)
	// LogDir keeps the full logs of failed stages.
	LogDir string
}

// Build builds every stage of the plan that is not cached and exports
// every target. It returns a *Failure when stages failed.
func (e *Engine) Build(ctx context.Context, p *planner.Plan) error {
	rep := newReporter(e.Report)
	errs := p.Walk(ctx, e.Jobs, func(ctx context.Context, s *planner.Stage) error {
		switch s.Node {
		case planner.TargetWrite:
			return e.targetWrite(ctx, rep, s)
		case planner.ImageStage:
			return e.stage(ctx, rep, s)
		}
		return fmt.Errorf("no way to build a %q node", s.Node)
	})
	if len(errs) == 0 {
		return nil
	}
	f := &Failure{}
	for _, s := range p.Stages {
		if err, ok := errs[s]; ok {
			if errors.Is(err, planner.ErrInputFailed) {
				f.NotRun = append(f.NotRun, s)
				rep.send(Event{Kind: NotRun, Stage: s, Name: StageName(s)})
			} else {
				f.Failed = append(f.Failed, StageError{Stage: s, Err: err})
			}
		}
	}
	if ctx.Err() != nil {
		f.Cancelled = true
	}
	return f
}

// stage builds one image stage unless it is cached.
func (e *Engine) stage(ctx context.Context, rep *reporter, s *planner.Stage) error {
	name := StageName(s)
	if e.Store.Has(s.Digest) {
		rep.send(Event{Kind: Cached, Stage: s, Name: name})
		return nil
	}
	unlock, err := e.Store.Lock(ctx, s.Digest)
	if err != nil {
		return err
	}
	defer unlock()
	if e.Store.Has(s.Digest) { // another fgimg built it while we waited
		rep.send(Event{Kind: Cached, Stage: s, Name: name})
		return nil
	}
	rep.send(Event{Kind: Start, Stage: s, Name: name})
	start := time.Now()
	work, err := e.Store.TempDir("stage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	logPath := filepath.Join(work, "log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()

	res, tree, err := e.runStage(ctx, s, work, logFile)
	if err != nil {
		return e.fail(rep, s, name, logPath, start, err)
	}
	desc, err := e.storeLayer(tree, s.Input == nil)
	if err != nil {
		return e.fail(rep, s, name, logPath, start, fmt.Errorf("storing the layer: %w", err))
	}
	logFile.Close()
	logDesc, err := e.Store.PutFile(logPath)
	if err != nil {
		return err
	}
	rec := cache.Record{
		Digest:   s.Digest,
		Kind:     s.Kind(),
		Outputs:  []cache.Output{{Name: "layer", Digest: desc.Digest, Size: desc.Size, MediaType: LayerMediaType}},
		Info:     res.Info,
		Duration: time.Since(start),
		Log:      logDesc.Digest,
	}
	if s.Input != nil {
		rec.Inputs = []digest.Digest{s.Input.Digest}
	}
	if err := e.Store.PutRecord(rec); err != nil {
		return err
	}
	// The finished tree becomes the layer's snapshot: a child stage
	// mounts it at once, without unpacking the layer again.
	if _, err := e.Store.AdoptSnapshot(desc.Digest, tree); err != nil {
		return err
	}
	rep.send(Event{Kind: Built, Stage: s, Name: name, Duration: time.Since(start), Bytes: desc.Size})
	return nil
}

// runStage runs s in work and returns the tree holding its result: the
// whole root filesystem for an origin stage, the overlay upper dir
// otherwise.
func (e *Engine) runStage(ctx context.Context, s *planner.Stage, work string, log io.Writer) (stages.Result, string, error) {
	arch := "amd64"
	if s.Image != nil {
		arch = s.Image.Meta.Arch
	}
	if s.Input == nil {
		root := filepath.Join(work, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			return stages.Result{}, "", err
		}
		res, err := stages.Run(ctx, s.Spec, &stages.Env{Root: root, Log: log, Arch: arch})
		return res, root, err
	}
	lower, err := e.lowerDirs(s.Input)
	if err != nil {
		return stages.Result{}, "", err
	}
	upper, ovWork, merged := filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "merged")
	for _, d := range []string{upper, ovWork, merged} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return stages.Result{}, "", err
		}
	}
	unmount, err := sandbox.MountOverlay(lower, e.Store.SnapshotsDir(), upper, ovWork, merged)
	if err != nil {
		return stages.Result{}, "", err
	}
	res, err := stages.Run(ctx, s.Spec, &stages.Env{Root: merged, Log: log, Arch: arch})
	if uerr := unmount(); uerr != nil && err == nil {
		err = fmt.Errorf("unmounting the stage's root filesystem: %w", uerr)
	}
	return res, upper, err
}

// lowerDirs returns the snapshots of top and every stage below it,
// topmost first, as names relative to the snapshots directory. Stages
// whose layers are byte-identical (two commands that change nothing, say)
// share one snapshot, which overlayfs refuses to stack twice; only its
// topmost place is kept, which leaves the merged view as it was, since
// the copy above holds the same files and whiteouts as the one below.
func (e *Engine) lowerDirs(top *planner.Stage) ([]string, error) {
	var lower []string
	seen := map[digest.Digest]bool{}
	for s := top; s != nil; s = s.Input {
		l, err := e.layerOf(s)
		if err != nil {
			return nil, err
		}
		if seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		dir, err := e.Store.Snapshot(l.Digest, func(r io.Reader, dir string) error {
			return layer.Apply(r, dir, layer.ApplyOptions{Overlay: true})
		})
		if err != nil {
			return nil, err
		}
		lower = append(lower, filepath.Base(dir))
	}
	return lower, nil
}

// layerOf returns the stored layer of a built stage.
func (e *Engine) layerOf(s *planner.Stage) (cache.Output, error) {
	rec, err := e.Store.Record(s.Digest)
	if err != nil {
		return cache.Output{}, fmt.Errorf("stage %s: %w", planner.Short(s.Digest), err)
	}
	for _, o := range rec.Outputs {
		if o.Name == "layer" {
			return o, nil
		}
	}
	return cache.Output{}, fmt.Errorf("stage %s has no layer in the cache", planner.Short(s.Digest))
}

// storeLayer writes tree as a layer blob: the whole tree for an origin
// stage, the overlay changes otherwise.
func (e *Engine) storeLayer(tree string, origin bool) (cache.Descriptor, error) {
	w, err := e.Store.NewBlob()
	if err != nil {
		return cache.Descriptor{}, err
	}
	defer w.Close()
	opts := layer.Options{SourceDateEpoch: e.Epoch}
	if origin {
		err = layer.WriteTree(w, tree, opts)
	} else {
		err = layer.WriteDiff(w, tree, opts)
	}
	if err != nil {
		return cache.Descriptor{}, err
	}
	return w.Commit()
}

// fail keeps the failed stage's log and reports the failure.
func (e *Engine) fail(rep *reporter, s *planner.Stage, name, logPath string, start time.Time, err error) error {
	kept := logPath
	if e.LogDir != "" {
		if mkErr := os.MkdirAll(e.LogDir, 0o755); mkErr == nil {
			dst := filepath.Join(e.LogDir, planner.Short(s.Digest)+".log")
			if copyFile(logPath, dst) == nil {
				kept = dst
			}
		}
	}
	err = &StageError{Stage: s, Err: err, Log: kept, Tail: tail(kept, 20)}
	rep.send(Event{Kind: Failed, Stage: s, Name: name, Duration: time.Since(start), Err: err})
	return err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
