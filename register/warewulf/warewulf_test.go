package warewulf_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/hpcfake"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/baremetal"
	"github.com/fgimg/fgimg/register/registertest"
	"github.com/fgimg/fgimg/register/warewulf"
	"github.com/fgimg/fgimg/targets"
)

func TestMain(m *testing.M) {
	hpcfake.Dispatch()
	os.Exit(m.Run())
}

// build writes target "compute-ww" (Warewulf image "rocky-ish") of a small
// image whose /etc/motd says version into OUT, as fgimg build leaves it.
func build(t *testing.T, out, version string) register.File {
	t.Helper()
	root := registertest.Root(t, map[string]string{
		"boot/vmlinuz-6.1.0-13-amd64": "kernel",
		"sbin/init":                   "#!/bin/sh\n",
		"etc/motd":                    version,
	})
	lp, ld, ln := registertest.LayerTar(t, root)
	epoch := time.Unix(1700000000, 0) // the same image gives the same bytes
	in := &targets.Input{Image: targets.ImageInfo{Name: "compute", ID: "sha256:0123", Arch: "amd64"}, Root: root, Digest: "sha256:4567", SourceDateEpoch: &epoch,
		Layers: []targets.Layer{{Digest: ld, Size: ln, Path: lp, Kind: "files"}}}
	dir := filepath.Join(out, "compute-ww")
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	spec := &targets.WarewulfSpec{Name: "compute", Target: "compute-ww", Image: "compute", Compression: "gzip", Profile: "default"}
	if _, err := (targets.Warewulf{}).Write(context.Background(), in, spec, dir); err != nil {
		t.Fatal(err)
	}
	registertest.Manifest(t, dir, "compute-ww", "warewulf")
	return registertest.Read(t, dir)
}

func run(t *testing.T, out string, dryRun, replace bool) (register.Result, string) {
	t.Helper()
	var log bytes.Buffer
	res := register.Run(context.Background(), register.Options{Out: out, Targets: []string{"compute-ww"}, DryRun: dryRun, Replace: replace, Log: &log,
		Open: func(_ context.Context, f *register.File) (register.Cloud, error) { return warewulf.Open(f) }})
	if res[0].Err != nil {
		t.Fatalf("register: %v\n%s", res[0].Err, &log)
	}
	return res[0], log.String()
}

func changes(st *hpcfake.State, from int) []string {
	var out []string
	for _, c := range st.Calls[from:] {
		if !strings.HasPrefix(c, "wwctl image list") && !strings.HasPrefix(c, "wwctl image show") {
			out = append(out, c)
		}
	}
	return out
}

// TestRegister: a dry run imports nothing; the first register imports the
// marked chroot, builds it and gives it to the profile; a second changes
// nothing (compared by the mark, not re-imported); a changed image takes
// the name and the older is kept, renamed, until -replace deletes it.
func TestRegister(t *testing.T) {
	site := hpcfake.Install(t)
	out := t.TempDir()
	f1 := build(t, out, "v1")
	s1 := f1.Steps[0]

	if _, log := run(t, out, true, false); !strings.Contains(log, "+ upload rootfs.tar.gz") {
		t.Errorf("dry-run plan:\n%s", log)
	}
	if st := site.Load(t); len(changes(st, 0)) != 0 {
		t.Fatalf("a dry run changed Warewulf: %v", st.Calls)
	}

	run(t, out, false, false)
	st := site.Load(t)
	if got := changes(st, 0); len(got) < 3 || !strings.HasPrefix(got[0], "wwctl image import ") || !strings.HasSuffix(got[0], " compute") ||
		got[1] != "wwctl image build compute" || got[2] != "wwctl profile set --yes --image compute default" {
		t.Errorf("calls %v", got)
	}
	rootfs := hpcfake.ImageRoot(site.State, "compute")
	if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/motd")); string(b) != "v1" {
		t.Errorf("imported /etc/motd %q", b)
	}
	mark, _ := os.ReadFile(filepath.Join(rootfs, "etc/fgimg-release"))
	if want := "FGIMG_DIGEST=" + string(s1.Digest) + "\nFGIMG_IMAGE=compute\nFGIMG_NAME=compute\nFGIMG_STEP=image\nFGIMG_TARGET=compute-ww\n"; string(mark) != want {
		t.Errorf("/etc/fgimg-release:\n%s\nwant:\n%s", mark, want)
	}
	if !st.Built["compute"] || st.Profiles["default"] != "compute" {
		t.Errorf("built %v, profiles %v", st.Built, st.Profiles)
	}

	n := len(st.Calls)
	if res, log := run(t, out, false, false); res.Plan.Actions[0].Op != register.OpSkip || len(changes(site.Load(t), n)) != 0 {
		t.Errorf("a second register changed Warewulf: %v\n%s", changes(site.Load(t), n), log)
	}

	f2 := build(t, out, "v2")
	kept := baremetal.KeptName("compute", s1.Digest)
	_, log := run(t, out, true, true)
	for _, want := range []string{
		"      wwctl image rename --build compute " + kept + " (the older image is kept)",
		"      unpack rootfs.tar.gz into a chroot; /etc/fgimg-release: FGIMG_DIGEST=" + string(f2.Steps[0].Digest),
		"      wwctl image import CHROOT compute; wwctl image build compute",
		"      wwctl profile set --yes --image compute default",
		"      wwctl image delete --yes " + kept,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("dry-run plan lacks %q:\n%s", want, log)
		}
	}
	run(t, out, false, false)
	st = site.Load(t)
	if b, _ := os.ReadFile(filepath.Join(hpcfake.ImageRoot(site.State, "compute"), "etc/motd")); string(b) != "v2" {
		t.Errorf("after a change, compute's /etc/motd is %q", b)
	}
	if m, _ := os.ReadFile(filepath.Join(hpcfake.ImageRoot(site.State, "compute"), "etc/fgimg-release")); !strings.Contains(string(m), string(f2.Steps[0].Digest)) {
		t.Errorf("mark %s", m)
	}
	if b, _ := os.ReadFile(filepath.Join(hpcfake.ImageRoot(site.State, kept), "etc/motd")); string(b) != "v1" || !st.Built[kept] {
		t.Errorf("the older image is not kept (built) as %s: motd %q, built %v", kept, b, st.Built)
	}
	if slices.ContainsFunc(st.Calls, func(c string) bool { return strings.Contains(c, "--update") || strings.Contains(c, "--force") }) {
		t.Errorf("register relied on import --update or --force: %v", st.Calls)
	}

	_, log = run(t, out, false, true)
	if _, err := os.Stat(hpcfake.ImageRoot(site.State, kept)); err == nil || !strings.Contains(log, "~ retire image "+kept) {
		t.Errorf("replace did not delete %s:\n%s", kept, log)
	}
	if _, err := os.Stat(hpcfake.ImageRoot(site.State, "compute")); err != nil {
		t.Error(err)
	}
}

// An image of the same name that fgimg did not import is never touched.
func TestRefusesAnImageItDidNotImport(t *testing.T) {
	site := hpcfake.Install(t)
	out := t.TempDir()
	build(t, out, "v1")
	theirs := t.TempDir()
	os.WriteFile(filepath.Join(theirs, "marker"), []byte("site"), 0o644)
	if code := hpcfake.Main("wwctl", []string{"image", "import", theirs, "compute"}, nil, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatal("wwctl image import")
	}
	res := register.Run(context.Background(), register.Options{Out: out, Targets: []string{"compute-ww"},
		Open: func(_ context.Context, f *register.File) (register.Cloud, error) { return warewulf.Open(f) }})
	if res[0].Err == nil || !strings.Contains(res[0].Error, `Warewulf image "compute" exists and fgimg did not register it`) {
		t.Errorf("register over the site's image: %v", res[0].Err)
	}
	if _, err := os.Stat(filepath.Join(hpcfake.ImageRoot(site.State, "compute"), "marker")); err != nil {
		t.Error("the site's image was changed")
	}
}

// register.sh does with wwctl what fgimg register does: the marked chroot
// imported, built and given to the profile.
func TestRegisterScript(t *testing.T) {
	testkit.Need(t, "sh", "flock", "sha256sum", "install", "tar")
	site := hpcfake.Install(t)
	out := t.TempDir()
	f := build(t, out, "v1")
	cmd := exec.Command("sh", filepath.Join(out, "compute-ww", register.ScriptName))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("register.sh: %v\n%s", err, b)
	}
	st := site.Load(t)
	rootfs := hpcfake.ImageRoot(site.State, "compute")
	m, _ := os.ReadFile(filepath.Join(rootfs, "etc/fgimg-release"))
	if b, _ := os.ReadFile(filepath.Join(rootfs, "etc/motd")); string(b) != "v1" || !strings.Contains(string(m), string(f.Steps[0].Digest)) ||
		!st.Built["compute"] || st.Profiles["default"] != "compute" {
		t.Errorf("after register.sh: motd %q, mark %q, state %+v", b, m, st)
	}
	// fgimg register then finds it registered.
	if res, log := run(t, out, false, false); res.Plan.Actions[0].Op != register.OpSkip {
		t.Errorf("register after register.sh:\n%s", log)
	}
}

// An image that comes back (v1, v2, v1, v2) takes the name each time; the
// one it displaces is kept, once.
func TestImageComesBack(t *testing.T) {
	site := hpcfake.Install(t)
	out := t.TempDir()
	for _, v := range []string{"v1", "v2", "v1", "v2"} {
		build(t, out, v)
		if res, log := run(t, out, false, false); res.Plan.Actions[0].Op != register.OpUpload {
			t.Fatalf("%s: plan\n%s", v, log)
		}
		if b, _ := os.ReadFile(filepath.Join(hpcfake.ImageRoot(site.State, "compute"), "etc/motd")); string(b) != v {
			t.Fatalf("%s: compute holds %q", v, b)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(site.State, "chroots"))
	if len(entries) != 3 {
		t.Errorf("images %v; want compute and the two kept", entries)
	}
}
