package xcat_test

import (
	"bytes"
	"context"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/hpcfake"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/baremetal"
	"github.com/fgimg/fgimg/register/registertest"
	"github.com/fgimg/fgimg/register/xcat"
	"github.com/fgimg/fgimg/targets"
)

func TestMain(m *testing.M) {
	hpcfake.Dispatch()
	os.Exit(m.Run())
}

// build writes target "hpc-xcat" (osimage "hpc") of a small image whose
// /etc/motd says version, into OUT, as fgimg build leaves it.
func build(t *testing.T, out, installDir, version string, moab []string) register.File {
	t.Helper()
	root := registertest.Root(t, map[string]string{
		"boot/vmlinuz-6.1.0-13-amd64": "kernel",
		"sbin/init":                   "#!/bin/sh\n",
		"etc/os-release":              "ID=debian\nVERSION_ID=\"12\"\n",
		"etc/motd":                    version,
	})
	epoch := time.Unix(1700000000, 0) // the same image gives the same bytes
	spec := &targets.XCATSpec{Name: "hpc", Target: "hpc-xcat", Image: "hpc", InstallDir: installDir, ProvMethod: "netboot",
		Profile: "compute", OSArch: "x86_64", KernelArgs: []string{"console=ttyS0"}, MoabNodes: moab}
	dir := filepath.Join(out, "hpc-xcat")
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in := &targets.Input{Image: targets.ImageInfo{Name: "hpc", ID: "sha256:0123", Arch: "amd64"}, Root: root, Digest: "sha256:4567", SourceDateEpoch: &epoch}
	if _, err := (targets.XCAT{}).Write(context.Background(), in, spec, dir); err != nil {
		t.Fatal(err)
	}
	registertest.Manifest(t, dir, "hpc-xcat", "xcat")
	return registertest.Read(t, dir)
}

func run(t *testing.T, out string, dryRun, replace bool) (register.Result, string) {
	t.Helper()
	var log bytes.Buffer
	res := register.Run(context.Background(), register.Options{Out: out, Targets: []string{"hpc-xcat"}, DryRun: dryRun, Replace: replace, Log: &log,
		Open: func(_ context.Context, f *register.File) (register.Cloud, error) { return xcat.Open(f) }})
	if res[0].Err != nil {
		t.Fatalf("register: %v\n%s", res[0].Err, &log)
	}
	return res[0], log.String()
}

func calls(st *hpcfake.State, from int) []string {
	var out []string
	for _, c := range st.Calls[from:] {
		out = append(out, strings.Fields(c)[0])
	}
	return out
}

// TestRegister follows an osimage through its life: a dry run changes
// nothing; the first register defines it (mkdef -z of the stanza, the
// files in its rootimgdir) and adds it to Moab's OS lists; a second does
// nothing; a changed image takes the name (chdef) and keeps the older one
// as hpc-<digest>; -replace retires that one (rmdef, files, Moab).
func TestRegister(t *testing.T) {
	site := hpcfake.Install(t)
	out, install := t.TempDir(), t.TempDir()
	f1 := build(t, out, install, "v1", []string{"DEFAULT", "node01"})
	s1 := f1.Steps[0]
	rootimgdir := filepath.Join(install, "netboot/debian12/x86_64/hpc")

	res, log := run(t, out, true, false)
	if res.Plan.Actions[0].Op != register.OpUpload || !strings.Contains(log, `+ upload netboot/debian12/x86_64/hpc/rootimg.cpio.gz`) {
		t.Errorf("dry-run plan:\n%s", log)
	}
	if st := site.Load(t); len(st.OSImages) != 0 || !slices.Equal(calls(st, 0), []string{"lsdef"}) {
		t.Fatalf("a dry run changed xCAT: calls %v, osimages %v", st.Calls, st.OSImages)
	}
	if _, err := os.Stat(rootimgdir); err == nil {
		t.Fatal("a dry run wrote the rootimgdir")
	}

	run(t, out, false, false)
	st := site.Load(t)
	im := st.OSImages["hpc"]
	want := map[string]string{"imagetype": "linux", "provmethod": "netboot", "profile": "compute", "osname": "Linux", "osvers": "debian12",
		"osarch": "x86_64", "rootimgdir": rootimgdir, "addkcmdline": "console=ttyS0",
		"description": "fgimg FGIMG_DIGEST=" + string(s1.Digest) + " FGIMG_IMAGE=hpc FGIMG_NAME=hpc FGIMG_STEP=osimage FGIMG_TARGET=hpc-xcat"}
	for k, v := range want {
		if im[k] != v {
			t.Errorf("osimage hpc: %s=%q, want %q", k, im[k], v)
		}
	}
	if !slices.Contains(st.Calls, "mkdef -z") || st.Recycles != 1 {
		t.Errorf("calls %v, %d recycles", st.Calls, st.Recycles)
	}
	sameFile(t, filepath.Join(out, "hpc-xcat", s1.Artifact), filepath.Join(rootimgdir, "rootimg.cpio.gz"))
	sameFile(t, filepath.Join(out, "hpc-xcat", s1.Options["kernel"]), filepath.Join(rootimgdir, "kernel"))
	a, _ := os.Stat(filepath.Join(rootimgdir, "rootimg.cpio.gz"))
	b, _ := os.Stat(filepath.Join(rootimgdir, "initrd-stateless.gz"))
	if b == nil || a.Sys().(*syscall.Stat_t).Ino != b.Sys().(*syscall.Stat_t).Ino {
		t.Error("initrd-stateless.gz is not a hard link of rootimg.cpio.gz")
	}
	if !slices.Equal(st.MoabOSList["DEFAULT"], []string{"compute", "hpc"}) || !slices.Equal(st.MoabOSList["node01"], []string{"hpc"}) {
		t.Errorf("Moab loaded OSLISTs %v", st.MoabOSList)
	}

	n := len(st.Calls)
	res, log = run(t, out, false, false)
	if st := site.Load(t); !slices.Equal(calls(st, n), []string{"lsdef"}) || res.Plan.Actions[0].Op != register.OpSkip {
		t.Errorf("a second register: calls %v, plan:\n%s", st.Calls[n:], log)
	}

	f2 := build(t, out, install, "v2", []string{"DEFAULT", "node01"})
	s2 := f2.Steps[0]
	if s2.Digest == s1.Digest {
		t.Fatal("a changed image has the same digest")
	}
	kept := baremetal.KeptName("hpc", s1.Digest)
	// The dry run's plan says what register will run.
	_, log = run(t, out, true, true)
	for _, want := range []string{
		"+ upload netboot/debian12/x86_64/hpc/rootimg.cpio.gz",
		"      keep the older osimage: mkdef -z " + kept + " (rootimgdir " + filepath.Join(install, "netboot/debian12/x86_64", kept),
		"      copy netboot/debian12/x86_64/hpc/kernel and netboot/debian12/x86_64/hpc/rootimg.cpio.gz into " + rootimgdir,
		"      " + site.MoabCfg + ": NODECFG[DEFAULT] OSLIST+=hpc, NODECFG[node01] OSLIST+=hpc; mschedctl -R",
		"      chdef -t osimage -o hpc with osimage.stanza's attributes",
		"  ~ retire image hpc \"hpc\"",
		"      rmdef -t osimage -o " + kept + "; rm -r " + filepath.Join(install, "netboot/debian12/x86_64", kept),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("dry-run plan lacks %q:\n%s", want, log)
		}
	}
	res, log = run(t, out, false, false)
	st = site.Load(t)
	if len(res.Plan.Actions) != 1 || !strings.Contains(st.OSImages["hpc"]["description"], string(s2.Digest)) {
		t.Fatalf("changed image: plan\n%s\nosimage %v", log, st.OSImages["hpc"])
	}
	if !slices.ContainsFunc(st.Calls, func(c string) bool { return strings.HasPrefix(c, "chdef -t osimage -o hpc ") }) {
		t.Errorf("the changed osimage was not chdef'd: %v", st.Calls)
	}
	keptDir := filepath.Join(install, "netboot/debian12/x86_64", kept)
	if st.OSImages[kept]["rootimgdir"] != keptDir || !strings.Contains(st.OSImages[kept]["description"], string(s1.Digest)) {
		t.Errorf("the older osimage is not kept as %s: %v", kept, st.OSImages)
	}
	sameFile(t, filepath.Join(rootimgdir, "rootimg.cpio.gz"), filepath.Join(out, "hpc-xcat", s2.Artifact))
	if _, err := os.Stat(filepath.Join(keptDir, "rootimg.cpio.gz")); err != nil {
		t.Errorf("the older osimage's files: %v", err)
	}
	if !slices.Equal(st.MoabOSList["DEFAULT"], []string{"compute", "hpc", kept}) {
		t.Errorf("Moab loaded OSLISTs %v", st.MoabOSList)
	}

	res, log = run(t, out, false, true)
	st = site.Load(t)
	if st.OSImages[kept] != nil || st.OSImages["hpc"] == nil || !strings.Contains(log, "~ retire image "+kept) {
		t.Errorf("replace: plan\n%s\nosimages %v", log, st.OSImages)
	}
	if _, err := os.Stat(keptDir); err == nil {
		t.Error("the retired osimage's rootimgdir is still there")
	}
	if !slices.Equal(st.MoabOSList["DEFAULT"], []string{"compute", "hpc"}) || !slices.Equal(st.MoabOSList["node01"], []string{"hpc"}) {
		t.Errorf("after retiring, Moab loaded OSLISTs %v", st.MoabOSList)
	}
	cfg, _ := os.ReadFile(site.MoabCfg)
	if !strings.Contains(string(cfg), "SCHEDCFG[Moab] SERVER=mn:42559\n") || strings.Contains(string(cfg), kept) {
		t.Errorf("moab.cfg:\n%s", cfg)
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Errorf("%s and %s differ", a, b)
	}
}

// An osimage of the same name that fgimg did not register is never touched.
func TestRefusesAnOSImageItDidNotRegister(t *testing.T) {
	site := hpcfake.Install(t)
	out, install := t.TempDir(), t.TempDir()
	build(t, out, install, "v1", nil)
	if code := hpcfake.Main("mkdef", []string{"-t", "osimage", "-o", "hpc", "imagetype=linux", "description=the site's own"}, nil, &bytes.Buffer{}, &bytes.Buffer{}); code != 0 {
		t.Fatal("mkdef")
	}
	res := register.Run(context.Background(), register.Options{Out: out, Targets: []string{"hpc-xcat"},
		Open: func(_ context.Context, f *register.File) (register.Cloud, error) { return xcat.Open(f) }})
	if res[0].Err == nil || !strings.Contains(res[0].Error, `osimage "hpc" exists and fgimg did not register it`) {
		t.Errorf("register over the site's osimage: %v", res[0].Err)
	}
	if st := site.Load(t); st.OSImages["hpc"]["description"] != "the site's own" {
		t.Errorf("the site's osimage was changed: %v", st.OSImages["hpc"])
	}
}

// Two registrations do not run at once: one waits for the bare-metal lock
// that another (here the test) holds, and defines nothing until it is
// released.
func TestOneBareMetalRegistrationAtATime(t *testing.T) {
	site := hpcfake.Install(t)
	out, install := t.TempDir(), t.TempDir()
	build(t, out, install, "v1", nil)
	unlock, err := baremetal.Lock(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan register.Result)
	go func() {
		done <- register.Run(context.Background(), register.Options{Out: out, Targets: []string{"hpc-xcat"},
			Open: func(_ context.Context, f *register.File) (register.Cloud, error) { return xcat.Open(f) }})[0]
	}()
	time.Sleep(1500 * time.Millisecond)
	if st := site.Load(t); len(st.OSImages) != 0 {
		t.Fatal("register defined the osimage while another registration held the lock")
	}
	unlock()
	select {
	case r := <-done:
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("register did not go on once the lock was free")
	}
	if st := site.Load(t); st.OSImages["hpc"] == nil {
		t.Error("no osimage once the lock was free")
	}
}

// register.sh does with xCAT's and Moab's commands what fgimg register
// does: the files in place, the osimage defined from the stanza (changed
// with chdef when run again), Moab's OS lists and a recycle.
func TestRegisterScript(t *testing.T) {
	testkit.Need(t, "sh", "flock", "sha256sum", "install")
	site := hpcfake.Install(t)
	out, install := t.TempDir(), t.TempDir()
	f := build(t, out, install, "v1", []string{"DEFAULT", "node01"})
	for i := range 2 {
		cmd := exec.Command("sh", filepath.Join(out, "hpc-xcat", register.ScriptName))
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("register.sh: %v\n%s", err, b)
		}
		st := site.Load(t)
		if !strings.Contains(st.OSImages["hpc"]["description"], string(f.Steps[0].Digest)) || st.OSImages["hpc"]["addkcmdline"] != "console=ttyS0" {
			t.Errorf("run %d: osimage %v", i+1, st.OSImages["hpc"])
		}
		if !slices.Equal(st.MoabOSList["DEFAULT"], []string{"compute", "hpc"}) || !slices.Equal(st.MoabOSList["node01"], []string{"hpc"}) || st.Recycles != i+1 {
			t.Errorf("run %d: Moab loaded %v after %d recycles", i+1, st.MoabOSList, st.Recycles)
		}
		if i == 1 && !strings.HasPrefix(st.Calls[len(st.Calls)-2], "chdef -t osimage -o hpc ") {
			t.Errorf("the second run did not chdef: %v", st.Calls)
		}
	}
	sameFile(t, filepath.Join(out, "hpc-xcat", f.Steps[0].Artifact), filepath.Join(install, "netboot/debian12/x86_64/hpc/initrd-stateless.gz"))
}

// An image that comes back (v1, v2, v1, v2) takes the name each time; the
// one it displaces is kept, once: a kept copy of the same digest is reused.
func TestImageComesBack(t *testing.T) {
	site := hpcfake.Install(t)
	out, install := t.TempDir(), t.TempDir()
	var digests []string
	for _, v := range []string{"v1", "v2", "v1", "v2"} {
		f := build(t, out, install, v, []string{"DEFAULT"})
		digests = append(digests, string(f.Steps[0].Digest))
		if res, log := run(t, out, false, false); res.Plan.Actions[0].Op != register.OpUpload {
			t.Fatalf("%s: plan\n%s", v, log)
		}
		st := site.Load(t)
		if !strings.Contains(st.OSImages["hpc"]["description"], string(f.Steps[0].Digest)) {
			t.Fatalf("%s: osimage hpc is %v", v, st.OSImages["hpc"])
		}
		sameFile(t, filepath.Join(out, "hpc-xcat", f.Steps[0].Artifact), filepath.Join(install, "netboot/debian12/x86_64/hpc/rootimg.cpio.gz"))
	}
	st := site.Load(t)
	if len(st.OSImages) != 3 || st.OSImages[baremetal.KeptName("hpc", digest.Digest(digests[0]))] == nil || st.OSImages[baremetal.KeptName("hpc", digest.Digest(digests[1]))] == nil {
		t.Errorf("osimages %v", slices.Sorted(maps.Keys(st.OSImages)))
	}
	if got := st.MoabOSList["DEFAULT"]; len(got) != 4 {
		t.Errorf("Moab OSLIST %v; want compute, hpc and the two kept", got)
	}
}
