package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/hpcfake"
	"github.com/fgimg/fgimg/register/registertest"
	"github.com/fgimg/fgimg/targets"
)

// writeBuilt writes every target of the configuration in dir into out as
// fgimg build would, from a small root filesystem instead of the image
// (the build itself is the Debian end-to-end test's): each kind's writer,
// then a manifest.json naming the plan's write stage, so that register
// takes the folders as built from this configuration.
func writeBuilt(t *testing.T, dir, out string) {
	t.Helper()
	var cf configFlags
	var errw bytes.Buffer
	_, plan := cf.load([]string{dir}, &errw)
	if plan == nil {
		t.Fatalf("plan: %s", &errw)
	}
	root := registertest.Root(t, map[string]string{
		"boot/vmlinuz-6.1.0-13-amd64": "kernel",
		"sbin/init":                   "#!/bin/sh\n",
		"etc/os-release":              "ID=debian\nVERSION_ID=\"12\"\n",
	})
	lp, ld, ln := registertest.LayerTar(t, root)
	for _, pt := range plan.Targets {
		kind, err := targets.For(pt.Target.Kind)
		if err != nil {
			t.Fatal(err)
		}
		tdir := filepath.Join(out, pt.Target.Name)
		os.MkdirAll(tdir, 0o755)
		in := &targets.Input{Image: targets.ImageInfo{Name: "hpc", ID: "sha256:0123", Arch: "amd64"}, Root: root, Digest: pt.Write.Digest,
			Layers: []targets.Layer{{Digest: ld, Size: ln, Path: lp, Kind: "files"}}}
		if _, err := kind.Write(context.Background(), in, kind.Spec(pt.Target), tdir); err != nil {
			t.Fatal(err)
		}
		registertest.Manifest(t, tdir, pt.Target.Name, pt.Target.Kind)
		var m map[string]any
		mb, _ := os.ReadFile(filepath.Join(tdir, "manifest.json"))
		json.Unmarshal(mb, &m)
		m["stages"] = []string{string(pt.Write.Digest)}
		mb, _ = json.Marshal(m)
		os.WriteFile(filepath.Join(tdir, "manifest.json"), mb, 0o644)
	}
}

// fgimg register of xcat and warewulf targets, against the stateful fakes:
// -dry-run prints the plan with the commands and changes nothing, the
// first register defines the osimage, tells Moab and imports the Warewulf
// image, a second does nothing.
func TestRegisterBareMetal(t *testing.T) {
	site := hpcfake.Install(t)
	dir, out, install := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(dir, "main.fg.hcl"), `image "hpc" {
  bootstrap "debootstrap" {
    suite = "bookworm"
  }
}

target "xcat" "hpc-xcat" {
  image       = image.hpc
  name        = "hpc"
  install_dir = "`+install+`"
  moab_nodes  = ["DEFAULT"]
}

target "warewulf" "hpc-ww" {
  image   = image.hpc
  name    = "hpc"
  profile = "default"
}
`)
	writeBuilt(t, dir, out)
	cache := t.TempDir()
	code, stdout, stderr := fgimg(t, "register", "-dry-run", "--cache-dir", cache, "-o", out, dir)
	for _, want := range []string{
		"target \"hpc-xcat\" → xCAT on ", "  + upload netboot/debian12/x86_64/hpc/rootimg.cpio.gz",
		"      mkdef -z <osimage.stanza", "NODECFG[DEFAULT] OSLIST+=hpc; mschedctl -R",
		"target \"hpc-ww\" → Warewulf on ", "  + upload rootfs.tar.gz", "      wwctl profile set --yes --image hpc default",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("register -dry-run lacks %q: exit %d\n%s\n%s", want, code, stdout, stderr)
		}
	}
	if st := site.Load(t); len(st.OSImages) != 0 || len(st.Built) != 0 {
		t.Fatalf("a dry run changed the site: %+v", st)
	}
	for i, want := range []string{"+ upload", "= skip"} {
		start := time.Now()
		code, stdout, stderr = fgimg(t, "register", "--cache-dir", cache, "-o", out, dir)
		if code != 0 || strings.Count(stdout, want) != 2 {
			t.Fatalf("register %d: exit %d, want two %q\n%s\n%s", i+1, code, want, stdout, stderr)
		}
		t.Logf("register %d: %v\n%s", i+1, time.Since(start).Round(time.Millisecond), stdout)
	}
	st := site.Load(t)
	if st.OSImages["hpc"] == nil || !st.Built["hpc"] || st.Profiles["default"] != "hpc" || strings.Join(st.MoabOSList["DEFAULT"], ",") != "compute,hpc" {
		t.Errorf("after register: %+v", st)
	}
}

// A bare-metal attribute fgimg cannot honour is a diagnostic at its line.
func TestBareMetalDiagnostics(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.fg.hcl"), `image "hpc" {
  bootstrap "debootstrap" {
    suite = "bookworm"
  }
}

target "xcat" "hpc-xcat" {
  image      = image.hpc
  provmethod = "statelite"
}

target "warewulf" "hpc-ww" {
  image = image.hpc
  name  = "hpc compute"
}
`)
	code, _, stderr := fgimg(t, "plan", dir)
	for _, want := range []string{"main.fg.hcl line 9", "statelite needs the root tree exported over NFS", "main.fg.hcl line 14", `"hpc compute" is not a usable name`} {
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("plan: exit %d, stderr lacks %q:\n%s", code, want, stderr)
		}
	}
}
