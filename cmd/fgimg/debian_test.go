package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/qemu"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/vet"
)

// TestDebianExamples builds the examples for real with debootstrap from
// the Debian mirror, every target included; a second build must be a
// no-op; then it boots, under QEMU, the qcow2 disk with BIOS, the raw
// disk with UEFI and the netboot artifact with -kernel/-initrd, each to a
// login prompt on the serial console, and the OpenStack and OpenNebula
// disks with their cloud's context, which cloud-init must apply. It
// registers those two as a user would: into a real Glance and into the
// OpenNebula fake, twice (the second uploads nothing), and the ec2 and
// eucalyptus targets into the EC2 fake through versitygw.
func TestDebianExamples(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds Debian images from the mirror (drop -short to run)")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end: building needs root")
	}
	testkit.Need(t, "debootstrap", "skopeo")
	needMirror(t)
	examples, _ := filepath.Abs("../../examples/debian")
	e := &env{t: t, dir: examples, cache: t.TempDir(), out: t.TempDir()}
	code, events, stderr := e.build(nil)
	if code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	if n := len(names(events, "built")); n < 15 {
		t.Errorf("built only %d stages: %v", n, names(events, "built"))
	}
	entries := readTar(t, gunzipTo(t, filepath.Join(e.out, "web-rootfs", "rootfs.tar.gz")))
	for _, want := range []string{"usr/sbin/nginx", "etc/systemd/system/multi-user.target.wants/nginx.service", "home/admin/.ssh/authorized_keys", "boot"} {
		if entries[want] == nil {
			t.Errorf("web rootfs lacks %s", want)
		}
	}
	if h := entries["home/admin/.ssh/authorized_keys"]; h != nil && (h.Uid == 0 || h.Mode&0o777 != 0o600) {
		t.Errorf("admin's authorized_keys: uid %d mode %o", h.Uid, h.Mode)
	}
	if _, ok := entries["etc/resolv.conf"]; ok {
		if b := extract(t, filepath.Join(e.out, "web-rootfs", "rootfs.tar.gz"), "etc/resolv.conf"); strings.Contains(b, "nameserver") {
			t.Errorf("the build host's resolv.conf leaked into the image: %q", b)
		}
	}
	if out, err := exec.Command("skopeo", "inspect", "oci:"+filepath.Join(e.out, "web-oci")+":latest").CombinedOutput(); err != nil {
		t.Errorf("skopeo inspect: %v\n%s", err, out)
	} else if !strings.Contains(string(out), `"Architecture": "amd64"`) {
		t.Errorf("skopeo inspect:\n%s", out)
	}
	// The SBOMs list what the images hold: web's nginx and its service,
	// the disk's kernel (of its adapted root).
	for _, c := range []struct{ target, want string }{
		{"web-rootfs", `"referenceLocator": "pkg:deb/debian/nginx@`},
		{"web-rootfs", "&distro=debian-12"},
		{"web-rootfs", "nginx.service"},
		{"base-cloud", `"name": "linux-image-amd64"`},
		{"base-cloud", "kernels: 6."},
	} {
		if b, err := os.ReadFile(filepath.Join(e.out, c.target, "sbom.spdx.json")); err != nil || !strings.Contains(string(b), c.want) {
			t.Errorf("%s's SBOM lacks %q (%v)", c.target, c.want, err)
		}
	}
	for _, a := range []string{"base-cloud/disk.qcow2", "base-uefi/disk.raw", "hadoop-cloud/disk.qcow2", "hpc-netboot/vmlinuz", "hpc-netboot/boot.ipxe",
		"base-openstack/disk.qcow2", "base-openstack/register.json", "base-openstack/register.sh",
		"base-opennebula/disk.qcow2", "base-opennebula/register.json", "base-opennebula/register.sh",
		"hpc-xcat/netboot/debian12/x86_64/hpc-compute/rootimg.cpio.gz", "hpc-xcat/netboot/debian12/x86_64/hpc-compute/kernel",
		"hpc-xcat/osimage.stanza", "hpc-xcat/register.sh", "hpc-warewulf/rootfs.tar.gz", "hpc-warewulf/register.json"} {
		if _, err := os.Stat(filepath.Join(e.out, a)); err != nil {
			t.Errorf("artifact %s: %v", a, err)
		}
	}
	code, events, stderr = e.build(nil)
	if code != 0 || len(names(events, "built")) != 0 {
		t.Errorf("second build: exit %d, built %v\n%s", code, names(events, "built"), stderr)
	}
	e.verifyCache()
	registerCloudTargets(t, e)
	testkit.Need(t, "qemu-system-x86_64", qemu.DefaultOVMFCode, qemu.DefaultOVMFVars, "genisoimage")
	// The four boots run at once: each is one guest CPU under TCG.
	t.Run("boots", func(t *testing.T) {
		bootCloudTargets(t, e.out)
		for _, target := range []string{
			"base-cloud", // qcow2, hybrid: BIOS
			"base-uefi",  // raw, UEFI (OVMF)
		} {
			t.Run("boot "+target, func(t *testing.T) {
				t.Parallel()
				out, err := e.command(context.Background(), nil, "boot", "-o", e.out, "-quiet", "-timeout", "10m", target).CombinedOutput()
				if err != nil {
					t.Fatalf("fgimg boot %s: %v\n%s", target, err, out)
				}
			})
		}
	})
	t.Run("vet", func(t *testing.T) { vetExamples(t, e) })
}

// vetExamples vets every example target: none has a finding that would
// block on bare metal (high or critical; the boot apart). hpc-xcat was
// booted in isolation by register's gate (registerCloudTargets): its
// report, cached, says it reached its login prompt and sshd listens on
// port 22.
func vetExamples(t *testing.T, e *env) {
	for _, target := range []string{"base-cloud", "base-uefi", "hadoop-cloud", "web-rootfs", "web-oci", "base-openstack", "base-opennebula", "hpc-netboot"} {
		_, r, stderr := e.vetJSON(nil, target)
		for _, f := range r.Findings {
			if f.Severity >= vet.High {
				t.Errorf("vet %s: %s\n%s", target, f, stderr)
			}
		}
	}
	code, r, stderr := e.vetJSON(nil, "-o", e.out, "hpc-xcat")
	b := r.Boot
	if code != 0 || !r.Passed || b == nil || !b.Login {
		t.Fatalf("vet hpc-xcat: exit %d, passed %t, boot %+v\n%s", code, r.Passed, b, stderr)
	}
	if strings.Contains(stderr, "booting hpc-xcat") {
		t.Errorf("vet hpc-xcat booted it again: the gate's report was not reused\n%s", stderr)
	}
	t.Logf("hpc-xcat's boot in isolation: boot %.1f s, probe %.2f s, listening %v, failed %v", b.Seconds, b.ProbeSeconds, b.Listening, b.FailedUnits)
	if b.ProbeSeconds >= 2 {
		t.Errorf("the probe took %.2f s", b.ProbeSeconds)
	}
	found := false
	for _, f := range r.Findings {
		found = found || f.ID == vet.IDBootListening && f.Path == "tcp 0.0.0.0:22" && f.Package == "sshd"
		if f.Severity >= vet.High {
			t.Errorf("vet hpc-xcat: %s", f)
		}
	}
	if !found {
		t.Errorf("vet hpc-xcat: no %s for sshd on tcp 0.0.0.0:22: %v", vet.IDBootListening, r.Findings)
	}
}

// gunzipTo decompresses a .gz file next to the test's temp files.
func gunzipTo(t *testing.T, path string) string {
	out := filepath.Join(t.TempDir(), "rootfs.tar")
	cmd := exec.Command("sh", "-c", `gzip -dc "$1" > "$2"`, "sh", path, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gunzip: %v %s", err, b)
	}
	return out
}

func extract(t *testing.T, tarball, name string) string {
	b, _ := exec.Command("tar", "-xzOf", tarball, name).Output()
	return string(b)
}

// needMirror skips when the Debian mirror the examples build from is
// unreachable.
func needMirror(tb testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, lang.DefaultMirror+"/dists/bookworm/Release", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		tb.Skipf("end-to-end: the Debian mirror is unreachable: %v", err)
	} else {
		resp.Body.Close()
	}
}
