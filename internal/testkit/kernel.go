package testkit

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// DebianKernel returns Debian's amd64 kernel package (the one
// linux-image-amd64 depends on) unpacked once into a cache under the
// temporary directory, shared by every test binary: the kernel is
// ROOT/boot/vmlinuz-VERSION and its modules are under
// ROOT/lib/modules/VERSION. It skips the test, saying why, when the
// package cannot be had.
func DebianKernel(t testing.TB) (root, version string) {
	t.Helper()
	Need(t, "apt-cache", "apt-get", "dpkg-deb")
	out, err := exec.Command("apt-cache", "depends", "linux-image-amd64").Output()
	if err != nil {
		t.Skipf("no Debian kernel: apt-cache depends linux-image-amd64: %v", err)
	}
	pkg := regexp.MustCompile(`linux-image-[0-9][^\s]*-amd64`).FindString(string(out))
	if pkg == "" {
		t.Skipf("no Debian kernel: linux-image-amd64 depends on no kernel package:\n%s", out)
	}
	version = strings.TrimPrefix(pkg, "linux-image-")
	root = filepath.Join(os.TempDir(), "fgimg-debian-kernel", pkg)
	if _, err := os.Stat(filepath.Join(root, "boot", "vmlinuz-"+version)); err == nil {
		return root, version
	}
	if err := os.MkdirAll(filepath.Dir(root), 0o755); err != nil {
		t.Fatal(err)
	}
	work, err := os.MkdirTemp(filepath.Dir(root), "download-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	os.Chmod(work, 0o755) // apt's _apt user downloads into it
	get := exec.Command("apt-get", "download", pkg)
	get.Dir = work
	if b, err := get.CombinedOutput(); err != nil {
		t.Skipf("no Debian kernel: apt-get download %s: %v\n%s", pkg, err, b)
	}
	debs, _ := filepath.Glob(filepath.Join(work, "*.deb"))
	if len(debs) != 1 {
		t.Fatalf("apt-get download %s left %q", pkg, debs)
	}
	x := filepath.Join(work, "x")
	if b, err := exec.Command("dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x %s: %v\n%s", debs[0], err, b)
	}
	// Another test binary may have unpacked it meanwhile: either copy will do.
	if err := os.Rename(x, root); err != nil && !errors.Is(err, os.ErrExist) && !strings.Contains(err.Error(), "directory not empty") {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "boot", "vmlinuz-"+version)); err != nil {
		t.Fatalf("unpacking %s: %v", pkg, err)
	}
	return root, version
}
