package planner

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/stages"
	"github.com/fgimg/fgimg/targets"
	"github.com/opencontainers/go-digest"
)

var update = flag.Bool("update", false, "rewrite golden files")

func load(t testing.TB, paths []string, vars ...lang.VarArg) *lang.Config {
	t.Helper()
	cfg, diags := lang.Load(lang.LoadOptions{Paths: paths, Vars: vars, Environ: []string{}, User: "tester", TargetKinds: targets.Schemas()})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return cfg
}

func mustPlan(t testing.TB, cfg *lang.Config, opts Options) *Plan {
	t.Helper()
	p, diags := New(cfg, opts)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	return p
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%s (run go test ./planner -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (run go test ./planner -update if the change is intended)\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

// cachedStore holds the given digests.
type cachedStore map[digest.Digest]bool

func (c cachedStore) Has(d digest.Digest) bool { return c[d] }

func TestGoldenPlan(t *testing.T) {
	cfg := load(t, []string{"testdata/pedigree"})
	p := mustPlan(t, cfg, Options{})
	golden(t, "pedigree.plan.golden", []byte(p.String()))
	js, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "pedigree.plan.json.golden", append(js, '\n'))

	// With base cached, its whole chain shows as cached.
	base := p.Image("base")
	store := cachedStore{}
	for _, s := range base.Stages {
		store[s.Digest] = true
	}
	golden(t, "pedigree-cached.plan.golden", []byte(mustPlan(t, cfg, Options{Store: store}).String()))
}

func TestSharedStagesAreOneNode(t *testing.T) {
	p := mustPlan(t, load(t, []string{"testdata/pedigree"}), Options{})
	seen := map[digest.Digest]bool{}
	for _, s := range p.Stages {
		if seen[s.Digest] {
			t.Fatalf("stage %s appears twice", s.Digest)
		}
		seen[s.Digest] = true
		if s.Input != nil && !seen[s.Input.Digest] {
			t.Fatalf("stage %s comes before its input", s.Digest)
		}
	}
	hpc, cp, base := p.Image("hpc"), p.Image("hpc-copy"), p.Image("base")
	if hpc.ID() != cp.ID() {
		t.Error("images with the same stages must share them")
	}
	for i, s := range base.Stages {
		if hpc.Stages[i] != s || p.Image("web").Stages[i] != s || p.Image("hadoop").Stages[i] != s {
			t.Errorf("children must share the parent's stage %d", i)
		}
	}
	// base: bootstrap, packages, files, users, services, run = 6;
	// hpc: +2; hadoop: +1; web: +3; hpc-copy: +0; alpine: 2; 5 targets,
	// 2 of them disks on different images, with an adaptation stage each.
	if len(p.Stages) != 6+2+1+3+2+5+2 {
		t.Errorf("%d stages", len(p.Stages))
	}
}

func TestSelect(t *testing.T) {
	cfg := load(t, []string{"testdata/pedigree"})
	names := func(p *Plan) (images, targets []string) {
		for _, im := range p.Images {
			images = append(images, im.Image.Name)
		}
		for _, tg := range p.Targets {
			targets = append(targets, tg.Target.Name)
		}
		return
	}
	p := mustPlan(t, cfg, Options{Only: []string{"hadoop-*"}})
	ims, tgs := names(p)
	if len(tgs) != 1 || tgs[0] != "hadoop-cloud" || len(ims) != 3 {
		t.Errorf("-only hadoop-*: images %v targets %v", ims, tgs)
	}
	p = mustPlan(t, cfg, Options{Except: []string{"*-oci", "alpine", "web*"}})
	ims, tgs = names(p)
	for _, n := range append(ims, tgs...) {
		if n == "alpine" || n == "alpine-oci" || n == "web" || n == "web-rootfs" {
			t.Errorf("-except left %s in", n)
		}
	}
	for _, bad := range [][]string{{"nosuch"}, {"hpc", "[x"}} {
		if _, diags := New(cfg, Options{Only: bad}); !diags.HasErrors() {
			t.Errorf("-only %v must be an error", bad)
		}
		if _, diags := New(cfg, Options{Except: bad}); !diags.HasErrors() {
			t.Errorf("-except %v must be an error", bad)
		}
	}
}

// memo answers one path with a fixed digest and records what it is told.
type memo struct {
	path string
	d    digest.Digest
	put  int
}

func (m *memo) Get(path string, _ os.FileInfo) (digest.Digest, bool) {
	return m.d, path == m.path
}
func (m *memo) Put(string, os.FileInfo, digest.Digest) { m.put++ }

func TestHashMemoIsConsulted(t *testing.T) {
	cfg := load(t, []string{"testdata/pedigree"})
	plain := mustPlan(t, cfg, Options{})
	src, _ := filepath.Abs("testdata/pedigree/files/site.conf")
	m := &memo{path: src, d: digest.FromString("remembered")}
	withMemo := mustPlan(t, cfg, Options{Memo: m})
	if plain.Image("web").ID() == withMemo.Image("web").ID() {
		t.Error("a remembered digest must stand in for reading the file")
	}
	if plain.Image("hpc").ID() != withMemo.Image("hpc").ID() {
		t.Error("images that do not read the file must not change")
	}
	if m.put == 0 {
		t.Error("digests of files read must be offered to the memo")
	}
}

// TestDiskTargetsShareTheirImagesAdaptation: a disk's fstab and ESP hook
// are an adaptation stage under its write, one node for every disk
// target of the same image (whatever its kind, size or boot settings,
// none of which the fstab or the hook depends on), another for another
// image, none for kinds that write the image as it is; plan shows it.
func TestDiskTargetsShareTheirImagesAdaptation(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rootfs.tar"), []byte("the origin's content"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := `
image "base" {
  bootstrap "tar" { source = "rootfs.tar" }
}
image "other" {
  parent = image.base
  run    = ["true"]
}
target "raw" "a" { image = image.base }
target "qcow2" "b" { image = image.base }
target "raw" "c" {
  image       = image.base
  boot        = "uefi"
  size        = "2GiB"
  kernel_args = ["quiet"]
}
target "raw" "d" { image = image.other }
target "tar" "e" { image = image.base }
`
	if err := os.WriteFile(filepath.Join(dir, "main.fg.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := mustPlan(t, load(t, []string{dir}), Options{})
	tg := map[string]*Target{}
	for _, x := range p.Targets {
		tg[x.Target.Name] = x
	}
	a := tg["a"]
	if len(a.Adapt) != 1 {
		t.Fatalf("raw target: %d adaptation stages, want 1", len(a.Adapt))
	}
	ad := a.Adapt[0]
	if ad.Node != AdaptStage || ad.Kind() != "disk-adapt" || ad.Input != p.Image("base").Stages[0] || a.Write.Input != ad {
		t.Errorf("adaptation %s %q on %v, write on %v: want a disk-adapt adaptation stage between the image and the write", ad.Node, ad.Kind(), ad.Input, a.Write.Input)
	}
	for _, n := range []string{"b", "c"} {
		if len(tg[n].Adapt) != 1 || tg[n].Adapt[0] != ad {
			t.Errorf("target %s does not share target a's adaptation stage", n)
		}
		if tg[n].Write == a.Write {
			t.Errorf("target %s shares target a's write", n)
		}
	}
	if d := tg["d"]; len(d.Adapt) != 1 || d.Adapt[0] == ad || d.Adapt[0].Input != p.Image("other").Stages[1] {
		t.Errorf("a disk of another image must get its own adaptation, on that image")
	}
	if len(tg["e"].Adapt) != 0 || tg["e"].Write.Input != p.Image("base").Stages[0] {
		t.Errorf("a tar target must write the image as it is")
	}
	n := 0
	for _, s := range p.Stages {
		if s.Node == AdaptStage {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d adaptation stages in the plan, want 2", n)
	}
	out := p.String()
	for _, want := range []string{
		"adapt build   " + Short(ad.Digest) + "  disk-adapt  /etc/fstab",
		"adapt build   " + Short(ad.Digest) + "  disk-adapt  /etc/fstab (/ on UUID " + ad.Spec.(*stages.DiskAdapt).RootUUID[:8] + "…), ESP kernel hook  (same as target a)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	// Built once, it is cached for every disk of the image.
	cached := mustPlan(t, load(t, []string{dir}), Options{Store: cachedStore{ad.Digest: true}})
	for _, x := range cached.Targets[:3] {
		if x.Adapt[0].Status != StatusCached {
			t.Errorf("target %s: adaptation %s, want cached", x.Target.Name, x.Adapt[0].Status)
		}
	}
}

// TestUnplannableImageReportedOnce: an image that cannot be planned (its
// file source holds a FIFO) is one error, not one more for every image
// and target standing on it.
func TestUnplannableImageReportedOnce(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteFile(t, dir, "src/file", "x")
	if err := syscall.Mkfifo(filepath.Join(dir, "src", "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, dir, "main.fg.hcl", `
image "base" {
  bootstrap "debootstrap" {
    suite = "bookworm"
  }
  file "/etc/x" {
    source = "src"
  }
}
image "a" {
  parent = image.base
  run    = ["true"]
}
image "b" {
  parent = image.a
  run    = ["true"]
}
target "tar" "t" {
  image = image.b
}
`)
	_, diags := New(load(t, []string{dir}), Options{})
	if len(diags) != 1 || !strings.Contains(diags[0].Error(), "pipe is neither a file") {
		t.Errorf("want one error about the FIFO, got %d:\n%s", len(diags), diags.Error())
	}
}
