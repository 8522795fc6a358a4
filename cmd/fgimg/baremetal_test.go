package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/hpcfake"
)

// fgimg register of xcat and warewulf targets built from a small root
// filesystem with a kernel (and a systemctl that only links), against the stateful fakes. Bare metal takes
// only approved images: register refuses the image, unbooted, and says how
// to approve it; after fgimg approve, -dry-run prints the plan with the
// commands and changes nothing, the first register defines the osimage,
// tells Moab and imports the Warewulf image, a second does nothing.
func TestRegisterBareMetal(t *testing.T) {
	site := hpcfake.Install(t)
	install := t.TempDir()
	e := newEnvWith(t, `image "hpc" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
  file "/boot/vmlinuz-6.1.0-13-amd64" {
    content = "kernel"
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
	if code, _, stderr := e.build(nil); code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	register := func(args ...string) (int, string, string) {
		return e.run(append(append([]string{"register"}, args...), "-o", e.out)...)
	}

	code, stdout, stderr := register("-dry-run")
	if code == 0 || strings.Count(stderr, "not approved") != 2 || !strings.Contains(stderr, "boot.not-run") || !strings.Contains(stderr, "xcat, bare metal") {
		t.Fatalf("register of an unapproved image: exit %d, want it refused twice for the boot not run\n%s\n%s", code, stdout, stderr)
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
