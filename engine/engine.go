// Package engine builds a plan: it walks the plan's graph and, for each
// node not in the cache, has an image stage run (a StageRunner) or a
// target kind's artifacts written (a TargetWriter), records the result
// in the Store, and exports every target's artifacts to OUT/<target>/.
// It stands between the CLI and the packages it drives, and knows them
// only through those three small interfaces.
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
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/targets"
	"github.com/opencontainers/go-digest"
)

// Store is what the engine asks of the cache (cache.Store is one).
type Store interface {
	Has(digest.Digest) bool
	// Lock holds the node's lock against other fgimg processes.
	Lock(ctx context.Context, d digest.Digest) (unlock func(), err error)
	// Hold marks stages in use, so that purge leaves them (cache.Store.Hold).
	Hold(stages []digest.Digest) (release func(), err error)
	Record(digest.Digest) (cache.Record, error)
	PutRecord(cache.Record) error
	// PutFile moves a file into the store as a blob.
	PutFile(path string) (cache.Descriptor, error)
	BlobPath(digest.Digest) (string, error)
	// TempDir makes a scratch directory beside the store.
	TempDir(pattern string) (string, error)
}

// StageRunner runs image stages and lends images' root filesystems
// (Overlay is the one fgimg uses).
type StageRunner interface {
	// Run runs image stage s on top of its input, logging to log, and
	// stores its layer; work is an empty scratch directory.
	Run(ctx context.Context, s *planner.Stage, work string, log io.Writer) (StageResult, error)
	// Mount makes a writable scratch copy of the image whose last stage
	// is top, in the empty directory work; release throws it away.
	Mount(ctx context.Context, top *planner.Stage, work string) (root string, release func() error, err error)
}

// StageResult is an image stage's stored layer and what its run recorded.
type StageResult struct {
	Layer cache.Output
	Info  map[string]string
}

// TargetWriter writes a target kind's artifacts (every targets.Kind is one).
type TargetWriter interface {
	Write(ctx context.Context, in *targets.Input, spec targets.Spec, dir string) ([]targets.Artifact, error)
}

// Engine builds plans into a store and exports targets into Out.
type Engine struct {
	Store  Store
	Runner StageRunner
	// Writer writes every target's artifacts; nil: each target's kind does.
	Writer TargetWriter
	Jobs   int
	// Out is where targets are written, OUT/<target>/; empty: not exported.
	Out string
	// Epoch clamps file times in artifacts (SOURCE_DATE_EPOCH).
	Epoch *time.Time
	// Report receives progress events; it is called from several
	// goroutines, one event at a time.
	Report func(Event)
	// LogDir keeps the full logs of failed stages.
	LogDir string
	// Shared is the shared repository stages are pulled from before
	// being built and pushed to after; nil: none.
	Shared Shared

	held bool // Hold is in force: Build need not hold
}

// Hold marks every stage of p in use until release: purge leaves them
// alone. Build holds what it walks by itself; a caller that reads the
// stages' records after Build (to catalog them) holds across both.
func (e *Engine) Hold(p *planner.Plan) (release func(), err error) {
	ds := make([]digest.Digest, len(p.Stages))
	for i, s := range p.Stages {
		ds[i] = s.Digest
	}
	rel, err := e.Store.Hold(ds)
	if err != nil {
		return nil, err
	}
	e.held = true
	return func() { e.held = false; rel() }, nil
}

// Mounts says whether building p may mount an image's root filesystem,
// which needs a private mount namespace (sandbox.Isolate): a stage or
// target is not in the store, or an image's software stack is not
// recorded. When none may, the build is a no-op: it reads the store and
// exports the targets. MountOverlay refuses outside such a namespace,
// so a wrong answer fails a build and never leaks a mount.
func (e *Engine) Mounts(p *planner.Plan) bool {
	for _, s := range p.Stages {
		if !e.Store.Has(s.Digest) {
			return true
		}
	}
	for _, im := range p.Images {
		if len(im.Stages) == 0 {
			continue
		}
		if _, ok, err := CachedStack(e.Store, im.Stages[len(im.Stages)-1].Digest); !ok || err != nil {
			return true
		}
	}
	return false
}

// Shared is a shared repository as the engine uses it (engine/shared
// puts one on cache/remote). Its failures never fail a build: the
// engine builds what it could not pull and reports what it could not
// push.
type Shared interface {
	// Find asks about many stages at once, before the walk, so that
	// Pull needs no round trip of its own to say "absent".
	Find(ctx context.Context, stages []*planner.Stage) error
	// Pull copies stage s's result into the store when the shared
	// repository holds it, and says whether it did and how many bytes
	// it fetched.
	Pull(ctx context.Context, s *planner.Stage) (pulled bool, bytes int64, err error)
	// Push stores stage s's result, which the store holds, in the
	// shared repository unless it is there already, and says whether
	// it sent it.
	Push(ctx context.Context, s *planner.Stage) (pushed bool, err error)
}

// Build builds every stage of the plan that is not cached and exports
// every target. It returns a *Failure when stages failed.
func (e *Engine) Build(ctx context.Context, p *planner.Plan) error {
	if !e.held {
		release, err := e.Hold(p)
		if err != nil {
			return err
		}
		defer release()
	}
	rep := newReporter(e.Report)
	sh := e.startSharing(ctx, rep, p)
	defer sh.wait()
	errs := p.Walk(ctx, e.Jobs, func(ctx context.Context, s *planner.Stage) error {
		switch s.Node {
		case planner.TargetWrite:
			return e.targetWrite(ctx, rep, sh, s)
		case planner.ImageStage, planner.AdaptStage:
			return e.stage(ctx, rep, sh, s)
		}
		return fmt.Errorf("no way to build a %q node", s.Node)
	})
	sh.wait()
	if len(errs) == 0 {
		return nil
	}
	f := &Failure{}
	for _, s := range p.Stages {
		if err, ok := errs[s]; ok {
			if errors.Is(err, planner.ErrInputFailed) {
				f.NotRun = append(f.NotRun, s)
				rep.send(Event{Kind: NotRun, Stage: s, Name: StageName(s)})
			} else if se := (*StageError)(nil); errors.As(err, &se) {
				f.Failed = append(f.Failed, *se)
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

// stage builds one image or adaptation stage unless it is cached.
func (e *Engine) stage(ctx context.Context, rep *reporter, sh *sharing, s *planner.Stage) error {
	name := StageName(s)
	cached, unlock, err := e.lockUnlessCached(ctx, s.Digest)
	if err != nil {
		return err
	}
	defer unlock()
	if cached {
		rep.send(Event{Kind: Cached, Stage: s, Name: name})
		sh.push(s)
		return nil
	}
	if sh.pull(ctx, s, name) {
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

	res, err := e.Runner.Run(ctx, s, work, logFile)
	if err != nil {
		return e.fail(rep, s, name, logPath, start, err)
	}
	logFile.Close()
	logDesc, err := e.Store.PutFile(logPath)
	if err != nil {
		return err
	}
	rec := cache.Record{
		Digest:   s.Digest,
		Kind:     s.Kind(),
		Outputs:  []cache.Output{res.Layer},
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
	rep.send(Event{Kind: Built, Stage: s, Name: name, Duration: time.Since(start), Bytes: res.Layer.Size})
	sh.push(s)
	return nil
}

// lockUnlessCached says whether the stage d is cached and, when it is
// not, takes its lock and asks again (another fgimg may have built it
// while we waited). unlock, a no-op when no lock was taken, is always
// to be called.
func (e *Engine) lockUnlessCached(ctx context.Context, d digest.Digest) (cached bool, unlock func(), err error) {
	if e.Store.Has(d) {
		return true, func() {}, nil
	}
	if unlock, err = e.Store.Lock(ctx, d); err != nil {
		return false, nil, err
	}
	return e.Store.Has(d), unlock, nil
}

// fail keeps the failed stage's log and reports the failure.
func (e *Engine) fail(rep *reporter, s *planner.Stage, name, logPath string, start time.Time, err error) error {
	lines := tail(logPath, 20)
	kept := keepLog(logPath, e.LogDir, planner.Short(s.Digest)+".log")
	err = &StageError{Stage: s, Err: err, Log: kept, Tail: lines}
	rep.send(Event{Kind: Failed, Stage: s, Name: name, Duration: time.Since(start), Err: err})
	return err
}

// keepLog moves a failed stage's log, which lives in scratch space that
// is removed, to dir/name and returns where it now is, or "" when it
// could not be kept. Renaming needs no free space, which matters when
// the stage failed because the cache's filesystem is full; a copy (dir
// on another filesystem) that fails is removed rather than left empty.
func keepLog(logPath, dir, name string) string {
	if dir == "" {
		return ""
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ""
	}
	dst := filepath.Join(dir, name)
	if os.Rename(logPath, dst) == nil {
		return dst
	}
	if err := copyFile(logPath, dst); err != nil {
		os.Remove(dst)
		return ""
	}
	return dst
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
