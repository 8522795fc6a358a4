package engine

import (
	"context"
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

// Overlay is the StageRunner fgimg builds with: each stage runs
// (package stages) on an overlay of the cached snapshots of the stages
// below it, and the overlay's changes become its layer, whose finished
// tree is kept as its snapshot.
type Overlay struct {
	Store *cache.Store
	// Epoch clamps file times in layers (SOURCE_DATE_EPOCH).
	Epoch *time.Time
	// StageTimeout bounds each stage's run time (stages.Env.Timeout):
	// zero means stages.DefaultStageTimeout, negative no bound.
	StageTimeout time.Duration
	// StageMemory bounds the memory of each command a stage runs
	// (stages.Env.MaxMemory): zero means sandbox.DefaultMaxMemory().
	StageMemory int64
	// StageCPUs bounds the CPU time of each command a stage runs
	// (stages.Env.MaxCPUs): zero means no bound.
	StageCPUs float64
}

var _ StageRunner = (*Overlay)(nil)

// Run implements StageRunner.
func (o *Overlay) Run(ctx context.Context, s *planner.Stage, work string, log io.Writer) (StageResult, error) {
	res, tree, err := o.runStage(ctx, s, work, log)
	if err != nil {
		return StageResult{}, err
	}
	desc, err := o.storeLayer(tree, s.Input == nil)
	if err != nil {
		return StageResult{}, fmt.Errorf("storing the layer: %w", err)
	}
	// The finished tree becomes the layer's snapshot: a child stage
	// mounts it at once, without unpacking the layer again.
	if _, err := o.Store.AdoptSnapshot(desc.Digest, tree); err != nil {
		return StageResult{}, err
	}
	return StageResult{
		Layer: cache.Output{Name: "layer", Digest: desc.Digest, Size: desc.Size, MediaType: LayerMediaType},
		Info:  res.Info,
	}, nil
}

// Mount implements StageRunner: a writable overlay of the image whose
// last stage is top at work/root, with its upper dir (the changes) at
// work/upper, so that they are thrown away with work; runStage makes
// the upper dir a stage's layer.
func (o *Overlay) Mount(_ context.Context, top *planner.Stage, work string) (string, func() error, error) {
	lower, err := o.lowerDirs(top)
	if err != nil {
		return "", nil, err
	}
	for _, d := range []string{"root", "upper", "work"} {
		if err := os.Mkdir(filepath.Join(work, d), 0o755); err != nil {
			return "", nil, err
		}
	}
	root := filepath.Join(work, "root")
	release, err := sandbox.MountOverlay(lower, o.Store.SnapshotsDir(), filepath.Join(work, "upper"), filepath.Join(work, "work"), root)
	return root, release, err
}

// runStage runs s in work and returns the tree holding its result: the
// whole root filesystem for an origin stage, the overlay upper dir
// otherwise.
func (o *Overlay) runStage(ctx context.Context, s *planner.Stage, work string, log io.Writer) (stages.Result, string, error) {
	arch := "amd64"
	if s.Image != nil {
		arch = s.Image.Meta.Arch
	}
	if s.Input == nil {
		root := filepath.Join(work, "root")
		if err := os.Mkdir(root, 0o755); err != nil {
			return stages.Result{}, "", err
		}
		res, err := stages.Run(ctx, s.Spec, &stages.Env{Root: root, Log: log, Arch: arch, Timeout: o.StageTimeout, MaxMemory: o.StageMemory, MaxCPUs: o.StageCPUs, Epoch: o.Epoch})
		return res, root, err
	}
	merged, unmount, err := o.Mount(ctx, s.Input, work)
	if err != nil {
		return stages.Result{}, "", err
	}
	res, err := stages.Run(ctx, s.Spec, &stages.Env{Root: merged, Log: log, Arch: arch, Timeout: o.StageTimeout, MaxMemory: o.StageMemory, MaxCPUs: o.StageCPUs, Epoch: o.Epoch})
	if uerr := unmount(); uerr != nil && err == nil {
		err = fmt.Errorf("unmounting the stage's root filesystem: %w", uerr)
	}
	return res, filepath.Join(work, "upper"), err
}

// lowerDirs returns the overlay lower dirs of top and every stage below
// it, topmost first, as names relative to the snapshots directory (see
// cache.Store.LowerDirs, which also keeps deep pedigrees mountable).
func (o *Overlay) lowerDirs(top *planner.Stage) ([]string, error) {
	var layers []digest.Digest
	for s := top; s != nil; s = s.Input {
		l, err := layerOf(o.Store, s)
		if err != nil {
			return nil, err
		}
		layers = append(layers, l.Digest)
	}
	return o.Store.LowerDirs(layers, func(r io.Reader, dir string) error {
		return layer.Apply(r, dir, layer.ApplyOptions{Overlay: true})
	})
}

// storeLayer writes tree as a layer blob: the whole tree for an origin
// stage, the overlay changes otherwise.
func (o *Overlay) storeLayer(tree string, origin bool) (cache.Descriptor, error) {
	w, err := o.Store.NewBlob()
	if err != nil {
		return cache.Descriptor{}, err
	}
	defer w.Close()
	opts := layer.Options{SourceDateEpoch: o.Epoch}
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

// layerOf returns the stored layer of a built stage.
func layerOf(store Store, s *planner.Stage) (cache.Output, error) {
	rec, err := store.Record(s.Digest)
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
