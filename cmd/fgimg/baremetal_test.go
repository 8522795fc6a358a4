package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/internal/cpio"
	"github.com/fgimg/fgimg/internal/hpcfake"
)

// bareMetalImage is a small root filesystem with a kernel (a text
// file), an init and a systemctl that only links (as the services stage
// runs it offline).
const bareMetalImage = `image "hpc" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
  file "/boot/vmlinuz-6.1.0-13-amd64" {
    content = "the image's kernel"
  }
  # systemctl enable as the services stage runs it offline: the link alone
  file "/usr/bin/systemctl" {
    mode    = "0755"
    content = "#!/bin/sh\nmkdir -p /etc/systemd/system/multi-user.target.wants && ln -sf /etc/systemd/system/$2 /etc/systemd/system/multi-user.target.wants/$2\n"
  }
  file "/sbin/init" {
    mode    = "0755"
    content = "#!/bin/sh\nexec /bin/sh\n"
  }
  file "/etc/os-release" {
    content = "ID=debian\nVERSION_ID=\"12\"\n"
  }
}

`

// fgimg register of xcat and warewulf targets built from bareMetalImage,
// against the stateful fakes. Bare metal takes only approved images:
// register refuses the image, which does not boot, and says how to
// approve it; after fgimg approve, -dry-run prints the plan with the
// commands and changes nothing, the first register defines the osimage,
// tells Moab and imports the Warewulf image, a second does nothing.
func TestRegisterBareMetal(t *testing.T) {
	site := hpcfake.Install(t)
	install := t.TempDir()
	e := newEnvWith(t, bareMetalImage+`target "xcat" "hpc-xcat" {
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
	if code, _, stderr := e.build(nil); code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	register := func(args ...string) (int, string, string) {
		return e.run(append(append([]string{"register"}, args...), "-o", e.out)...)
	}

	code, stdout, stderr := register("-dry-run")
	// Both boot (the warewulf target as Warewulf boots its node) and
	// neither reaches a login prompt: their kernel is a text file.
	if code == 0 || strings.Count(stderr, "not approved") != 2 || strings.Count(stderr, "boot.no-login") != 2 || !strings.Contains(stderr, "xcat, bare metal") {
		t.Fatalf("register of an unapproved image: exit %d, want it refused twice for no login prompt\n%s\n%s", code, stdout, stderr)
	}
	// Two images: each kind adapts its own.
	for _, l := range strings.Split(stderr, "\n") {
		if i := strings.Index(l, "fgimg approve "); i >= 0 {
			id := strings.Fields(l[i:])[2]
			if code, out, errs := e.run("approve", "-by", "ops", "-note", "booted by hand on a test node", id); code != 0 {
				t.Fatalf("approve %s: exit %d\n%s%s", id, code, out, errs)
			}
		}
	}

	code, stdout, stderr = register("-dry-run")
	if n := strings.Count(stderr, "approved by review (ops"); n != 2 {
		t.Errorf("register -dry-run after approve: %d targets approved by review, want 2\n%s", n, stderr)
	}
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
		code, stdout, stderr = register()
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

// A warewulf target boots in isolation as Warewulf 4.6 boots its node:
// the image's own kernel with the whole image as the initramfs, packed
// from the cached image at vet time (the artifact folder keeps only what
// Warewulf imports). A fake QEMU keeps what it was given and prints what
// the probe prints on a real boot; the image then passes the bare-metal
// gate by tools, and register goes ahead without a review.
func TestVetBootWarewulf(t *testing.T) {
	hpcfake.Install(t)
	e := newEnvWith(t, bareMetalImage+`target "warewulf" "hpc-ww" {
  image   = image.hpc
  name    = "hpc"
  profile = "default"
}
`)
	if code, _, stderr := e.build(nil); code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	got := t.TempDir()
	bin := t.TempDir()
	writeFile(t, filepath.Join(bin, "qemu-system-x86_64"), `#!/bin/sh
printf '%s\n' "$@" >"$FAKE_QEMU_GOT/args"
while [ $# -gt 0 ]; do
  case $1 in -kernel) cp "$2" "$FAKE_QEMU_GOT/kernel" ;; -initrd) cp "$2" "$FAKE_QEMU_GOT/initrd" ;; esac
  shift
done
printf 'Debian GNU/Linux 12 hpc ttyS0\r\n\r\nhpc login: \r\n'
printf 'fgv begin 31.20\r\nfgv getty active\r\nfgv sock tcp 00000000:0016 0A 4242\r\nfgv comm 312 sshd\r\n'
printf 'fgv fd /proc/312/fd socket:[4242]\r\nfgv end 31.35\r\nFGIMG-VET-2END\r\n'
exec sleep 600
`)
	os.Chmod(filepath.Join(bin, "qemu-system-x86_64"), 0o755)
	fake := []string{"PATH=" + bin + ":" + os.Getenv("PATH"), "FAKE_QEMU_GOT=" + got}

	code, r, stderr := e.vetJSON(fake, "hpc-ww")
	if code != 0 || !r.Passed || r.Boot == nil || !r.Boot.Login || !r.Policy.Boot {
		t.Fatalf("vet hpc-ww: exit %d, passed %t, boot %+v, policy %+v; want it booted and passed\n%s", code, r.Passed, r.Boot, r.Policy, stderr)
	}
	if l := r.Boot.Listening; len(l) != 1 || l[0].Process != "sshd" {
		t.Errorf("listening %+v, want sshd", l)
	}
	args, _ := os.ReadFile(filepath.Join(got, "args"))
	if a := strings.Split(string(args), "\n"); !slices.Contains(a, "-kernel") || !slices.Contains(a, "-initrd") || slices.Contains(a, "-nic") {
		t.Errorf("QEMU ran with %q: want a kernel, an initramfs and no network", a)
	}
	if k, _ := os.ReadFile(filepath.Join(got, "kernel")); string(k) != "the image's kernel" {
		t.Errorf("QEMU booted the kernel %q, want the image's /boot/vmlinuz-6.1.0-13-amd64", k)
	}

	// The initramfs is the tree Warewulf imports (the artifact), with an
	// /init that starts the image's init, then the probe's own archive.
	initrd, err := os.ReadFile(filepath.Join(got, "initrd"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(initrd)) // gzip, as Warewulf serves it
	if err != nil {
		t.Fatalf("the initramfs: %v", err)
	}
	zr.Multistream(false) // the probe's archive follows, uncompressed
	cr := cpio.NewReader(zr)
	inRAM := map[string]string{}
	for {
		h, err := cr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		inRAM[h.Name] = h.Linkname
	}
	if inRAM["init"] != "sbin/init" {
		t.Errorf("the initramfs's /init is %q, want a link to sbin/init", inRAM["init"])
	}
	delete(inRAM, "init")
	delete(inRAM, ".") // the root, which the tarball does not list
	imported := readTar(t, gunzipTo(t, filepath.Join(e.out, "hpc-ww", "rootfs.tar.gz")))
	for name := range inRAM {
		if imported[name] == nil {
			t.Errorf("the initramfs has %s, which rootfs.tar.gz lacks", name)
		}
	}
	for name := range imported {
		if _, ok := inRAM[name]; !ok {
			t.Errorf("the initramfs lacks %s from rootfs.tar.gz", name)
		}
	}
	if imported["boot/vmlinuz-6.1.0-13-amd64"] == nil || imported["bin/busybox"] == nil {
		t.Errorf("rootfs.tar.gz has %d entries, without the kernel or busybox", len(imported))
	}
	if !bytes.Contains(initrd, []byte("etc/systemd/system/fgimg-vet-probe.service")) {
		t.Error("the initramfs lacks the probe")
	}
	// Nothing was written beside the artifacts.
	entries, _ := os.ReadDir(filepath.Join(e.out, "hpc-ww"))
	var files []string
	for _, de := range entries {
		files = append(files, de.Name())
	}
	if strings.Join(files, " ") != "manifest.json register.json register.sh rootfs.tar.gz sbom.spdx.json" {
		t.Errorf("the target's folder holds %q", files)
	}

	// Approved by tools: register goes ahead without a review.
	code, stdout, stderr := e.runEnv(fake, "register", "-dry-run", "-o", e.out)
	if code != 0 || strings.Contains(stderr, "refuses") || !strings.Contains(stdout, "+ upload rootfs.tar.gz") {
		t.Fatalf("register -dry-run: exit %d\n%s\n%s", code, stdout, stderr)
	}
	store, err := cache.Open(e.cache)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cat, err := catalog.NewFiles(store)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cat.FindApproval("hpc-ww")
	if err != nil || a.Status != catalog.StatusApproved || a.By != catalog.ByTools {
		t.Errorf("the catalog's approval: %+v, %v; want approved by tools", a, err)
	}
}
