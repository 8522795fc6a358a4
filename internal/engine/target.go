package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/internal/outdir"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/stages/sandbox"
	"github.com/fgimg/fgimg/targets"
	"github.com/opencontainers/go-digest"
)

// Manifest is OUT/<target>/manifest.json: what was built, from what.
type Manifest struct {
	Target    string          `json:"target"`
	Kind      string          `json:"kind"`
	Image     string          `json:"image"`
	ImageID   digest.Digest   `json:"image_id"`
	Pedigree  []string        `json:"pedigree"`
	Stages    []digest.Digest `json:"stages"`
	Artifacts []ManifestFile  `json:"artifacts"`
}

// ManifestFile is one artifact, its path relative to the target's folder.
type ManifestFile struct {
	Path      string        `json:"path"`
	Digest    digest.Digest `json:"digest"`
	Size      int64         `json:"size"`
	MediaType string        `json:"media_type"`
}

// target builds a target's artifacts unless they are cached, then copies
// them out to OUT/<target>/.
func (e *Engine) target(ctx context.Context, rep *reporter, t *planner.Target) error {
	s := t.Stage
	name := StageName(s)
	cached := e.Store.Has(s.Digest)
	if !cached {
		unlock, err := e.Store.Lock(ctx, s.Digest)
		if err != nil {
			return err
		}
		defer unlock()
		cached = e.Store.Has(s.Digest)
	}
	start := time.Now()
	if !cached {
		rep.send(Event{Kind: Start, Stage: s, Name: name})
		if err := e.buildTarget(ctx, t); err != nil {
			err = &StageError{Stage: s, Err: err}
			rep.send(Event{Kind: Failed, Stage: s, Name: name, Duration: time.Since(start), Err: err})
			return err
		}
	}
	kind := Built
	if cached {
		kind = Cached
	}
	if e.Out == "" {
		rep.send(Event{Kind: kind, Stage: s, Name: name, Duration: time.Since(start)})
		return nil
	}
	dir, size, err := e.export(t)
	if err != nil {
		err = &StageError{Stage: s, Err: fmt.Errorf("writing %s: %w", dir, err)}
		rep.send(Event{Kind: Failed, Stage: s, Name: name, Err: err})
		return err
	}
	rep.send(Event{Kind: kind, Stage: s, Name: name, Duration: time.Since(start), Bytes: size, Path: dir})
	return nil
}

// buildTarget runs the target's writer and stores its artifacts.
func (e *Engine) buildTarget(ctx context.Context, t *planner.Target) error {
	w, err := targets.For(t.Target.Kind)
	if err != nil {
		return err
	}
	in := &targets.Input{
		Target: t.Target.Name,
		Image: targets.ImageInfo{
			Name: t.Image.Image.Name, ID: t.Image.ID(), Meta: t.Image.Image.Meta,
		},
		SourceDateEpoch: e.Epoch,
	}
	for _, a := range t.Image.Image.Pedigree() {
		in.Image.Pedigree = append(in.Image.Pedigree, a.Name)
	}
	for _, s := range t.Image.Stages {
		out, err := e.layerOf(s)
		if err != nil {
			return err
		}
		path, err := e.Store.BlobPath(out.Digest)
		if err != nil {
			return err
		}
		in.Layers = append(in.Layers, targets.Layer{Digest: out.Digest, Size: out.Size, Path: path, Kind: s.Kind()})
	}
	work, err := e.Store.TempDir("target-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	unmount, err := e.scratchRoot(t.Image.Stages[len(t.Image.Stages)-1], work)
	if err != nil {
		return err
	}
	defer unmount()
	in.Root = filepath.Join(work, "root")
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	start := time.Now()
	arts, err := w.Write(ctx, in, t.Stage.Spec.(*targets.Spec), out)
	if err != nil {
		return err
	}
	rec := cache.Record{Digest: t.Stage.Digest, Kind: t.Stage.Kind(), Inputs: []digest.Digest{t.Image.ID()}}
	for _, a := range arts {
		desc, err := e.Store.PutFile(filepath.Join(out, filepath.FromSlash(a.Path)))
		if err != nil {
			return fmt.Errorf("storing %s: %w", a.Path, err)
		}
		rec.Outputs = append(rec.Outputs, cache.Output{Name: a.Path, Digest: desc.Digest, Size: desc.Size, MediaType: a.MediaType})
	}
	rec.Duration = time.Since(start)
	return e.Store.PutRecord(rec)
}

// scratchRoot mounts at work/root a writable overlay of the image whose
// last stage is top, with its upper dir in work: changes are thrown
// away with work.
func (e *Engine) scratchRoot(top *planner.Stage, work string) (func() error, error) {
	lower, err := e.lowerDirs(top)
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"root", "upper", "work"} {
		if err := os.Mkdir(filepath.Join(work, d), 0o755); err != nil {
			return nil, err
		}
	}
	return sandbox.MountOverlay(lower, e.Store.SnapshotsDir(), filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "root"))
}

// export copies a target's stored artifacts to OUT/<target>/ and writes
// its manifest.json. It returns the folder and the bytes written.
// outdir.Replace refuses a folder fgimg did not write and swaps the new
// one in whole, so a stale artifact never lingers.
func (e *Engine) export(t *planner.Target) (string, int64, error) {
	dir := filepath.Join(e.Out, t.Target.Name)
	rec, err := e.Store.Record(t.Stage.Digest)
	if err != nil {
		return dir, 0, err
	}
	var total int64
	err = outdir.Replace(e.Out, t.Target.Name, func(tmp string) error {
		total, err = e.writeExport(t, rec, tmp)
		return err
	})
	return dir, total, err
}

// writeExport fills the empty folder tmp with a target's artifacts and
// its manifest.json.
func (e *Engine) writeExport(t *planner.Target, rec cache.Record, tmp string) (int64, error) {
	m := Manifest{
		Target: t.Target.Name, Kind: t.Target.Kind, Image: t.Image.Image.Name, ImageID: t.Image.ID(),
		Stages: append(digestsOf(t.Image.Stages), t.Stage.Digest),
	}
	for _, a := range t.Image.Image.Pedigree() {
		m.Pedigree = append(m.Pedigree, a.Name)
	}
	var total int64
	for _, o := range rec.Outputs {
		src, err := e.Store.BlobPath(o.Digest)
		if err != nil {
			return 0, err
		}
		dst := filepath.Join(tmp, filepath.FromSlash(o.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return 0, err
		}
		if err := cloneFile(src, dst); err != nil {
			return 0, err
		}
		total += o.Size
		m.Artifacts = append(m.Artifacts, ManifestFile{Path: o.Name, Digest: o.Digest, Size: o.Size, MediaType: o.MediaType})
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return total, os.WriteFile(filepath.Join(tmp, outdir.ManifestName), append(b, '\n'), 0o644)
}

func digestsOf(list []*planner.Stage) []digest.Digest {
	out := make([]digest.Digest, len(list))
	for i, s := range list {
		out[i] = s.Digest
	}
	return out
}
