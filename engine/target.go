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

// targetWrite writes a target kind's artifacts into the cache unless
// they are cached, then exports them for every target the write stands
// for.
func (e *Engine) targetWrite(ctx context.Context, rep *reporter, sh *sharing, s *planner.Stage) error {
	name := StageName(s)
	cached, unlock, err := e.lockUnlessCached(ctx, s.Digest)
	if err != nil {
		return err
	}
	defer unlock()
	start := time.Now()
	pulled := !cached && sh.pull(ctx, s, name)
	if !cached && !pulled {
		rep.send(Event{Kind: Start, Stage: s, Name: name})
		if err := e.writeArtifacts(ctx, s); err != nil {
			err = &StageError{Stage: s, Err: err}
			rep.send(Event{Kind: Failed, Stage: s, Name: name, Duration: time.Since(start), Err: err})
			return err
		}
	}
	rec, err := e.Store.Record(s.Digest)
	if err != nil {
		return err
	}
	var size int64
	for _, o := range rec.Outputs {
		size += o.Size
	}
	switch {
	case cached:
		rep.send(Event{Kind: Cached, Stage: s, Name: name})
	case !pulled:
		rep.send(Event{Kind: Built, Stage: s, Name: name, Duration: time.Since(start), Bytes: size})
	}
	sh.push(s)
	if e.Out == "" {
		return nil
	}
	for _, t := range s.Targets {
		dir, err := e.exportTarget(t, rec)
		if err != nil {
			err = &StageError{Stage: s, Err: fmt.Errorf("writing %s: %w", dir, err)}
			rep.send(Event{Kind: Failed, Stage: s, Name: "target " + t.Target.Name, Err: err})
			return err
		}
		rep.send(Event{Kind: Exported, Stage: s, Name: "target " + t.Target.Name, Bytes: size, Path: dir, Target: t.Target.Name})
	}
	return nil
}

// writeArtifacts runs the target kind's writer and stores its artifacts.
func (e *Engine) writeArtifacts(ctx context.Context, s *planner.Stage) error {
	t := s.Targets[0] // all of them have the same kind, spec and image
	im := t.Image
	in := &targets.Input{
		Image:           targets.ImageInfo{Name: im.Image.Name, ID: im.ID(), Arch: im.Image.Meta.Arch},
		Digest:          s.Digest,
		SourceDateEpoch: e.Epoch,
	}
	chain := t.Chain()
	for _, st := range chain {
		out, err := layerOf(e.Store, st)
		if err != nil {
			return err
		}
		path, err := e.Store.BlobPath(out.Digest)
		if err != nil {
			return err
		}
		in.Layers = append(in.Layers, targets.Layer{Digest: out.Digest, Size: out.Size, Path: path, Kind: st.Kind()})
	}
	work, err := e.Store.TempDir("target-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root, release, err := e.Runner.Mount(ctx, s.Input, work)
	if err != nil {
		return err
	}
	defer release()
	in.Root = root
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return err
	}
	start := time.Now()
	var w TargetWriter = t.Kind
	if e.Writer != nil {
		w = e.Writer
	}
	arts, err := w.Write(ctx, in, s.Spec.(targets.Spec), out)
	if err != nil {
		return err
	}
	sbom, err := e.writeSBOM(ctx, in, s.Input.Digest, out)
	if err != nil {
		return err
	}
	arts = append(arts, sbom)
	rec := cache.Record{Digest: s.Digest, Kind: s.Kind(), Inputs: []digest.Digest{s.Input.Digest}}
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

// exportTarget copies the artifacts of a target's write (rec, its
// cache record) to OUT/<target>/ with a manifest.json, and returns the
// folder. outdir.Replace refuses a folder fgimg did not write and swaps
// the new one in whole, so a stale artifact never lingers.
func (e *Engine) exportTarget(t *planner.Target, rec cache.Record) (string, error) {
	dir := filepath.Join(e.Out, t.Target.Name)
	return dir, outdir.Replace(e.Out, t.Target.Name, func(tmp string) error {
		return e.writeExport(t, rec, tmp)
	})
}

// writeExport fills the empty folder tmp with a target's artifacts and
// its manifest.json.
func (e *Engine) writeExport(t *planner.Target, rec cache.Record, tmp string) error {
	for _, o := range rec.Outputs {
		src, err := e.Store.BlobPath(o.Digest)
		if err != nil {
			return err
		}
		dst := filepath.Join(tmp, filepath.FromSlash(o.Name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := cloneFile(src, dst); err != nil {
			return err
		}
	}
	return os.WriteFile(filepath.Join(tmp, outdir.ManifestName), TargetManifest(t, rec), 0o644)
}

// TargetManifest is the manifest.json of target t written by the write
// whose record is rec.
func TargetManifest(t *planner.Target, rec cache.Record) []byte {
	m := Manifest{
		Target: t.Target.Name, Kind: t.Target.Kind, Image: t.Image.Image.Name, ImageID: t.Image.ID(),
		Stages: append(digestsOf(t.Chain()), t.Write.Digest),
	}
	for _, a := range t.Image.Image.Pedigree() {
		m.Pedigree = append(m.Pedigree, a.Name)
	}
	for _, o := range rec.Outputs {
		m.Artifacts = append(m.Artifacts, ManifestFile{Path: o.Name, Digest: o.Digest, Size: o.Size, MediaType: o.MediaType})
	}
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

func digestsOf(list []*planner.Stage) []digest.Digest {
	out := make([]digest.Digest, len(list))
	for i, s := range list {
		out[i] = s.Digest
	}
	return out
}
