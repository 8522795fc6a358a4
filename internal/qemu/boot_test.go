package qemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/hosttool"
	"github.com/fgimg/fgimg/internal/testkit"
)

// realQEMU skips a test that needs QEMU and a kernel to boot.
func realQEMU(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("boots a real kernel under QEMU, 5-20 s (drop -short to run)")
	}
	testkit.Need(t, DefaultBinary)
}

// debianKernel returns the vmlinuz of Debian's kernel package, or skips.
func debianKernel(t *testing.T) string {
	root, version := testkit.DebianKernel(t)
	return filepath.Join(root, "boot", "vmlinuz-"+version)
}

// initramfs packs a busybox root filesystem with init as its /init into
// a gzipped newc cpio archive.
func initramfs(t *testing.T, init string) string {
	t.Helper()
	testkit.Need(t, "cpio")
	root := t.TempDir()
	testkit.BusyboxRootfs(t, root)
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(init), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "initramfs.cpio.gz")
	pack := exec.Command("sh", "-c", `find . | cpio -o -H newc --quiet | gzip > "$1"`, "sh", out)
	pack.Dir = root
	if b, err := pack.CombinedOutput(); err != nil {
		t.Fatalf("packing the initramfs: %v\n%s", err, b)
	}
	return out
}

func TestRealBootFindsTheMarker(t *testing.T) {
	realQEMU(t)
	kernel := debianKernel(t)
	// The marker is computed, so only a running shell can print it.
	initrd := initramfs(t, "#!/bin/sh\necho \"fgimg-smoke-$((6 * 7))\"\n/bin/busybox poweroff -f\n")
	disk := filepath.Join(t.TempDir(), "scratch.raw")
	if err := os.WriteFile(disk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var console, log bytes.Buffer
	res, err := Boot(context.Background(), Options{
		Kernel: kernel, Initrd: initrd, Append: "quiet", Disk: disk, Memory: 512,
		Expect: []string{"fgimg-smoke-42"}, Timeout: 3 * time.Minute, Console: &console, Log: &log,
	})
	if err != nil {
		t.Fatalf("%v\nlog:\n%s\nconsole:\n%s", err, log.String(), console.String())
	}
	if res.Outcome != Expected || res.Marker != "fgimg-smoke-42" || !strings.Contains(console.String(), "fgimg-smoke-42") {
		t.Errorf("%+v\n%s", res, console.String())
	}
	if CheckKVM() != nil && res.Accel != "tcg" {
		t.Errorf("KVM does not work here, yet the boot used %s", res.Accel)
	}
	t.Logf("booted with %s in %s", res.Accel, res.Elapsed.Round(time.Millisecond))
}

func TestRealBootReportsAPanic(t *testing.T) {
	realQEMU(t)
	kernel := debianKernel(t)
	initrd := initramfs(t, "#!/bin/sh\nexit 3\n") // init ends: the kernel panics
	res, err := Boot(context.Background(), Options{Kernel: kernel, Initrd: initrd, Memory: 512, Timeout: 3 * time.Minute})
	if !errors.Is(err, ErrPanic) || res.Outcome != Panic || !strings.Contains(res.Marker, "Attempted to kill init") {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestRealUEFIBootReachesALoginPrompt(t *testing.T) {
	realQEMU(t)
	testkit.Need(t, DefaultOVMFCode, DefaultOVMFVars)
	kernel := debianKernel(t)
	initrd := initramfs(t, `#!/bin/sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox hostname fgimg-uefi
exec /bin/busybox getty 115200 ttyS0
`)
	opts := Options{Kernel: kernel, Initrd: initrd, UEFI: true, Memory: 512, Timeout: 3 * time.Minute}
	var disk string
	var before []byte
	if _, err := hosttool.Find("qemu-img"); err == nil || testkit.ToolsRequired() {
		disk = filepath.Join(t.TempDir(), "disk.qcow2")
		if b, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
			t.Fatalf("qemu-img: %v\n%s", err, b)
		}
		before, _ = os.ReadFile(disk)
		opts.Disk = disk
	}
	var console bytes.Buffer
	opts.Console = &console
	res, err := Boot(context.Background(), opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, console.String())
	}
	if res.Outcome != Login || res.Marker != "fgimg-uefi login:" {
		t.Errorf("%+v", res)
	}
	// The kernel says which firmware started it: "efi: EFI v2.70 by EDK II".
	if !strings.Contains(console.String(), "by EDK II") {
		t.Errorf("the kernel was not started by OVMF:\n%s", console.String())
	}
	if disk != "" {
		if after, _ := os.ReadFile(disk); !bytes.Equal(before, after) {
			t.Error("the disk changed: it must be attached with -snapshot")
		}
	}
}
