package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/targets"
)

// fakeStore keeps records in memory and blobs in a directory.
type fakeStore struct {
	mu      sync.Mutex
	dir     string
	records map[digest.Digest]cache.Record
}

func newFakeStore(t *testing.T) *fakeStore {
	return &fakeStore{dir: t.TempDir(), records: map[digest.Digest]cache.Record{}}
}

func (s *fakeStore) Has(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.records[d]
	return ok
}

func (s *fakeStore) Lock(context.Context, digest.Digest) (func(), error) { return func() {}, nil }

func (s *fakeStore) Hold([]digest.Digest) (func(), error) { return func() {}, nil }

func (s *fakeStore) Record(d digest.Digest) (cache.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.records[d]
	if !ok {
		return r, fmt.Errorf("no record %s", d)
	}
	return r, nil
}

func (s *fakeStore) PutRecord(r cache.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[r.Digest] = r
	return nil
}

func (s *fakeStore) PutFile(path string) (cache.Descriptor, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return cache.Descriptor{}, err
	}
	d := digest.FromBytes(b)
	if err := os.Rename(path, filepath.Join(s.dir, d.Encoded())); err != nil {
		return cache.Descriptor{}, err
	}
	return cache.Descriptor{Digest: d, Size: int64(len(b))}, nil
}

func (s *fakeStore) BlobPath(d digest.Digest) (string, error) {
	return filepath.Join(s.dir, d.Encoded()), nil
}

func (s *fakeStore) TempDir(pattern string) (string, error) { return os.MkdirTemp(s.dir, pattern) }

// fakeRunner "runs" a stage by storing a layer that names it; it fails
// the stages whose run commands include "fail".
type fakeRunner struct {
	store   *fakeStore
	mu      sync.Mutex
	ran     []string
	mounted []string // the top stage of each root given to a writer
	// fill, when set, fills each mounted root.
	fill func(root string, top *planner.Stage) error
}

func (r *fakeRunner) Run(_ context.Context, s *planner.Stage, work string, log io.Writer) (StageResult, error) {
	r.mu.Lock()
	r.ran = append(r.ran, s.Image.Name+": "+s.Kind())
	r.mu.Unlock()
	fmt.Fprintf(log, "running %s\n", s.Kind())
	if strings.Contains(fmt.Sprint(s.Spec), "fail") {
		return StageResult{}, fmt.Errorf("%s failed", s.Kind())
	}
	p := filepath.Join(work, "layer")
	if err := os.WriteFile(p, []byte("layer of "+s.Digest), 0o644); err != nil {
		return StageResult{}, err
	}
	desc, err := r.store.PutFile(p)
	if err != nil {
		return StageResult{}, err
	}
	return StageResult{Layer: cache.Output{Name: "layer", Digest: desc.Digest, Size: desc.Size, MediaType: LayerMediaType}}, nil
}

func (r *fakeRunner) Mount(_ context.Context, top *planner.Stage, work string) (string, func() error, error) {
	r.mu.Lock()
	r.mounted = append(r.mounted, top.Kind())
	r.mu.Unlock()
	root := filepath.Join(work, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return "", nil, err
	}
	if r.fill != nil {
		if err := r.fill(root, top); err != nil {
			return "", nil, err
		}
	}
	return root, func() error { return nil }, nil
}

// fakeWriter writes one artifact that names the spec and the image.
type fakeWriter struct {
	mu    sync.Mutex
	wrote []string
	ids   []digest.Digest // the image IDs writers were given
}

func (w *fakeWriter) Write(_ context.Context, in *targets.Input, spec targets.Spec, dir string) ([]targets.Artifact, error) {
	w.mu.Lock()
	w.wrote = append(w.wrote, fmt.Sprintf("%s of %s, %d layers", spec.Kind(), in.Image.Name, len(in.Layers)))
	w.ids = append(w.ids, in.Image.ID)
	w.mu.Unlock()
	if _, err := os.Stat(in.Root); err != nil {
		return nil, fmt.Errorf("no root: %w", err)
	}
	body := fmt.Sprintf("%s %s %s", spec.Kind(), spec.Summary(), in.Image.ID)
	if err := os.WriteFile(filepath.Join(dir, "artifact"), []byte(body), 0o644); err != nil {
		return nil, err
	}
	return []targets.Artifact{{Path: "artifact", MediaType: "text/plain"}}, nil
}

const config = `
image "base" {
  bootstrap "tar" { source = "rootfs.tar" }
  run = ["make base"]
}
image "child" {
  parent = image.base
  run    = ["make child"]
}
target "tar" "one" { image = image.base }
target "tar" "two" { image = image.base }
target "oci" "three" { image = image.child }
`

func plan(t *testing.T, src string) *planner.Plan {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "rootfs.tar"), []byte("origin"), 0o644)
	os.WriteFile(filepath.Join(dir, "main.fg.hcl"), []byte(src), 0o644)
	cfg, diags := lang.Load(lang.LoadOptions{Paths: []string{dir}, Environ: []string{}, User: "tester", TargetKinds: targets.Schemas()})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	p, diags := planner.New(cfg, planner.Options{})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return p
}

type world struct {
	store  *fakeStore
	runner *fakeRunner
	writer *fakeWriter
	out    string
	events []Event
}

func (w *world) build(t *testing.T, p *planner.Plan) error {
	t.Helper()
	w.runner.ran, w.runner.mounted, w.writer.wrote, w.events = nil, nil, nil, nil
	e := &Engine{Store: w.store, Runner: w.runner, Writer: w.writer, Jobs: 2, Out: w.out,
		Report: func(ev Event) { w.events = append(w.events, ev) }}
	return e.Build(context.Background(), p)
}

func newWorld(t *testing.T) *world {
	s := newFakeStore(t)
	return &world{store: s, runner: &fakeRunner{store: s}, writer: &fakeWriter{}, out: t.TempDir()}
}

func (w *world) named(kind EventKind) []string {
	var out []string
	for _, ev := range w.events {
		if ev.Kind == kind {
			out = append(out, ev.Name)
		}
	}
	sort.Strings(out)
	return out
}

func TestBuildRunsEachNodeOnceAndExportsEveryTarget(t *testing.T) {
	w := newWorld(t)
	p := plan(t, config)
	if err := w.build(t, p); err != nil {
		t.Fatal(err)
	}
	sort.Strings(w.runner.ran)
	if want := []string{"base: bootstrap", "base: run", "child: run"}; !slices.Equal(w.runner.ran, want) {
		t.Errorf("ran %v, want %v", w.runner.ran, want)
	}
	sort.Strings(w.writer.wrote)
	if want := []string{"oci of child, 3 layers", "tar of base, 2 layers"}; !slices.Equal(w.writer.wrote, want) {
		t.Errorf("wrote %v, want one write per kind, spec and image: %v", w.writer.wrote, want)
	}
	if got := w.named(Exported); !slices.Equal(got, []string{"target one", "target three", "target two"}) {
		t.Errorf("exported %v", got)
	}
	for _, name := range []string{"one", "two", "three"} {
		b, err := os.ReadFile(filepath.Join(w.out, name, "artifact"))
		if err != nil {
			t.Fatalf("target %s: %v", name, err)
		}
		m, err := os.ReadFile(filepath.Join(w.out, name, "manifest.json"))
		if err != nil || !strings.Contains(string(m), `"target": "`+name+`"`) {
			t.Errorf("target %s's manifest: %v\n%s", name, err, m)
		}
		if kind := strings.Fields(string(b))[0]; (name == "three") != (kind == "oci") {
			t.Errorf("target %s holds a %s artifact", name, kind)
		}
	}

	// A second build runs and writes nothing, and exports again.
	os.RemoveAll(filepath.Join(w.out, "two"))
	if err := w.build(t, p); err != nil {
		t.Fatal(err)
	}
	if len(w.runner.ran) != 0 || len(w.writer.wrote) != 0 || len(w.named(Built)) != 0 {
		t.Errorf("a cached build ran %v, wrote %v, built %v", w.runner.ran, w.writer.wrote, w.named(Built))
	}
	if _, err := os.Stat(filepath.Join(w.out, "two", "artifact")); err != nil {
		t.Errorf("a cached target is exported again: %v", err)
	}
}

func TestBuildStopsAboveAFailureOnly(t *testing.T) {
	w := newWorld(t)
	err := w.build(t, plan(t, strings.Replace(config, "make child", "fail", 1)))
	var f *Failure
	if !errors.As(err, &f) || len(f.Failed) != 1 || len(f.NotRun) != 1 {
		t.Fatalf("got %v, want one failed stage and one not run", err)
	}
	if got := StageName(f.Failed[0].Stage); got != "child: run" {
		t.Errorf("failed %s", got)
	}
	if got := StageName(f.NotRun[0]); got != "target three" {
		t.Errorf("not run %s", got)
	}
	if f.Failed[0].Tail == nil || !strings.Contains(strings.Join(f.Failed[0].Tail, "\n"), "running run") {
		t.Errorf("the failure keeps the stage's log: %+v", f.Failed[0])
	}
	if got := w.named(Exported); !slices.Equal(got, []string{"target one", "target two"}) {
		t.Errorf("exported %v: independent targets must be written", got)
	}
}

// TestDiskAdaptationIsBuiltOnceAndCached: the disk adaptation stage is
// built once for two disk targets of one image, the writers get the
// adapted chain (and the image's own ID, from which the disk's UUIDs
// derive), and a disk target added later builds no adaptation again.
func TestDiskAdaptationIsBuiltOnceAndCached(t *testing.T) {
	w := newWorld(t)
	const disks = `
image "base" {
  bootstrap "tar" { source = "rootfs.tar" }
  run = ["make base"]
}
target "raw" "a" { image = image.base }
target "qcow2" "b" { image = image.base }
`
	p := plan(t, disks)
	if err := w.build(t, p); err != nil {
		t.Fatal(err)
	}
	sort.Strings(w.runner.ran)
	if want := []string{"base: bootstrap", "base: disk-adapt", "base: run"}; !slices.Equal(w.runner.ran, want) {
		t.Errorf("ran %v, want %v", w.runner.ran, want)
	}
	sort.Strings(w.writer.wrote)
	if want := []string{"qcow2 of base, 3 layers", "raw of base, 3 layers"}; !slices.Equal(w.writer.wrote, want) {
		t.Errorf("wrote %v, want %v", w.writer.wrote, want)
	}
	if want := []string{"disk-adapt", "disk-adapt"}; !slices.Equal(w.runner.mounted, want) {
		t.Errorf("writers got roots topped by %v, want the adaptation stage", w.runner.mounted)
	}
	id := p.Image("base").ID()
	for _, got := range w.writer.ids {
		if got != id {
			t.Errorf("writer given image ID %s, want the image's own %s", got, id)
		}
	}
	m, err := os.ReadFile(filepath.Join(w.out, "a", "manifest.json"))
	if err != nil || !strings.Contains(string(m), string(p.Targets[0].Adapt[0].Digest)) {
		t.Errorf("target a's manifest lacks its adaptation stage: %v\n%s", err, m)
	}

	p = plan(t, disks+`target "raw" "c" {
  image = image.base
  size  = "2GiB"
}
`)
	if err := w.build(t, p); err != nil {
		t.Fatal(err)
	}
	if len(w.runner.ran) != 0 || !slices.Equal(w.writer.wrote, []string{"raw of base, 3 layers"}) {
		t.Errorf("a third disk target ran %v and wrote %v: want no stage, one write", w.runner.ran, w.writer.wrote)
	}
}
