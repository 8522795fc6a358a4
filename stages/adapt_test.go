package stages

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/testkit"
)

// TestDiskAdaptWritesFstabAndHook: the fstab names the disk's file
// systems by the spec's UUIDs and keeps the image's other mounts, the
// hook goes in only with a kernel, and every time written is the
// image's newest, so the adaptation does not date the image.
func TestDiskAdaptWritesFstabAndHook(t *testing.T) {
	newest := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	for _, kernel := range []bool{true, false} {
		root := t.TempDir()
		put := func(rel, body string) { t.Helper(); testkit.WriteFile(t, root, rel, body) }
		put("etc/fstab", "/dev/sda1 / ext4 defaults 0 1\ntmpfs /scratch tmpfs size=1G 0 0\n")
		put("bin/sh", "a shell")
		if kernel {
			put("boot/vmlinuz-6.1.0-18-amd64", "kernel")
		}
		old := newest.Add(-time.Hour)
		for _, p := range []string{"etc/fstab", "etc", "bin", "boot/vmlinuz-6.1.0-18-amd64", "boot", "."} {
			os.Chtimes(filepath.Join(root, p), old, old)
		}
		os.Chtimes(filepath.Join(root, "bin/sh"), newest, newest)
		spec := &DiskAdapt{RootUUID: "0a1b2c3d-0000-4000-8000-000000000001", ESPUUID: "89AB-CDEF"}
		if _, err := Run(context.Background(), spec, &Env{Root: root}); err != nil {
			t.Fatal(err)
		}
		fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
		for _, want := range []string{
			"UUID=0a1b2c3d-0000-4000-8000-000000000001\t/\text4\terrors=remount-ro\t0\t1\n",
			"UUID=89AB-CDEF\t/boot/efi\tvfat\tumask=0077\t0\t2\n",
			"tmpfs /scratch tmpfs size=1G 0 0\n",
		} {
			if !strings.Contains(string(fstab), want) {
				t.Errorf("fstab lacks %q:\n%s", want, fstab)
			}
		}
		if strings.Contains(string(fstab), "/dev/sda1") {
			t.Errorf("fstab keeps the image's own root entry:\n%s", fstab)
		}
		times := map[string]time.Time{"etc/fstab": newest, "boot/efi": newest, "etc": old, "boot": old}
		if !kernel {
			times["boot"] = newest // made by the adaptation
		}
		for p, want := range times {
			if st, err := os.Stat(filepath.Join(root, p)); err != nil || !st.ModTime().Equal(want) {
				t.Errorf("%s: %v, mtime %v, want %v", p, err, st.ModTime(), want)
			}
		}
		for _, p := range espHookPaths {
			st, err := os.Stat(filepath.Join(root, p))
			if kernel && (err != nil || st.Mode().Perm() != 0o755 || !st.ModTime().Equal(newest)) {
				t.Errorf("with a kernel, %s: %v %v", p, err, st)
			}
			if !kernel && err == nil {
				t.Errorf("without a kernel, %s is written", p)
			}
		}
	}
}

// TestDiskAdaptWithoutESP: a root file system with no disk around it
// (an instance-store image's) gets an fstab with / only, no /boot/efi
// to wait for, and no ESP hook.
func TestDiskAdaptWithoutESP(t *testing.T) {
	root := t.TempDir()
	testkit.WriteFile(t, root, "etc/fstab", "UUID=89AB-CDEF /boot/efi vfat umask=0077 0 2\n")
	testkit.WriteFile(t, root, "boot/vmlinuz-6.1.0-18-amd64", "kernel")
	spec := &DiskAdapt{RootUUID: "0a1b2c3d-0000-4000-8000-000000000001"}
	if _, err := Run(context.Background(), spec, &Env{Root: root}); err != nil {
		t.Fatal(err)
	}
	fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
	if !strings.Contains(string(fstab), "UUID=0a1b2c3d-0000-4000-8000-000000000001\t/\text4") || strings.Contains(string(fstab), "/boot/efi") {
		t.Errorf("fstab:\n%s", fstab)
	}
	for _, p := range append([]string{"boot/efi"}, espHookPaths...) {
		if _, err := os.Stat(filepath.Join(root, p)); err == nil {
			t.Errorf("%s is there without an ESP", p)
		}
	}
}
