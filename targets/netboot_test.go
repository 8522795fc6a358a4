package targets

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/cpio"
	"github.com/fgimg/fgimg/internal/testkit"
)

// netbootTree is a busybox root filesystem with a fake kernel at
// boot/vmlinuz-1.2.3 and sbin/init.
func netbootTree(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	testkit.BusyboxRootfs(t, root)
	for _, d := range []string{"boot", "sbin"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "boot/vmlinuz-1.2.3"), []byte("fake kernel 1.2.3"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../bin/busybox", filepath.Join(root, "sbin/init")); err != nil {
		t.Fatal(err)
	}
	testkit.SetTimes(t, root, testkit.Epoch)
	return root
}

func netbootInput(root string) *Input {
	epoch := testkit.Epoch.Add(time.Hour)
	return &Input{Image: ImageInfo{Name: "hpc", ID: "sha256:0123abcd"}, Root: root, SourceDateEpoch: &epoch}
}

func writeNetbootTarget(t testing.TB, in *Input, spec *NetbootSpec) (string, []Artifact) {
	t.Helper()
	w, err := For("netboot")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	arts, err := w.Write(context.Background(), in, spec, dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, arts
}

type netbootEntry struct {
	cpio.Header
	data string
}

// readNetbootInitramfs decompresses (after the file name) and parses an initramfs.
func readNetbootInitramfs(t testing.TB, p string) []netbootEntry {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	switch filepath.Ext(p) {
	case ".gz":
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case ".zst":
		zr, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	}
	cr := cpio.NewReader(r)
	var out []netbootEntry
	for {
		h, err := cr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		b, err := io.ReadAll(cr)
		if err != nil {
			t.Fatalf("%s: %s: %v", p, h.Name, err)
		}
		out = append(out, netbootEntry{*h, string(b)})
	}
	if rest, err := io.ReadAll(r); err != nil || len(bytes.Trim(rest, "\x00")) > 0 {
		t.Fatalf("%s: after the trailer: %d bytes, %v", p, len(rest), err)
	}
	return out
}

func TestNetboot(t *testing.T) {
	root := netbootTree(t)
	in := netbootInput(root)
	args := []string{"console=ttyS0", "quiet"}
	for _, tc := range []struct {
		compression, initrd, mediaType string
	}{
		{"", "initramfs.cpio.gz", "application/vnd.fgimg.linux.initramfs.cpio+gzip"},
		{"gzip", "initramfs.cpio.gz", "application/vnd.fgimg.linux.initramfs.cpio+gzip"},
		{"zstd", "initramfs.cpio.zst", "application/vnd.fgimg.linux.initramfs.cpio+zstd"},
		{"none", "initramfs.cpio", "application/vnd.fgimg.linux.initramfs.cpio"},
	} {
		t.Run("compression="+tc.compression, func(t *testing.T) {
			dir, arts := writeNetbootTarget(t, in, &NetbootSpec{Compression: tc.compression, KernelArgs: args})
			want := []Artifact{
				{"vmlinuz", MediaTypeKernel},
				{tc.initrd, tc.mediaType},
				{"boot.ipxe", MediaTypeIPXE},
				{"pxelinux.cfg", MediaTypePXELinux},
			}
			if fmt.Sprint(arts) != fmt.Sprint(want) {
				t.Fatalf("artifacts %v, want %v", arts, want)
			}
			if got := listFiles(t, dir); fmt.Sprint(got) != fmt.Sprint([]string{"boot.ipxe", tc.initrd, "pxelinux.cfg", "vmlinuz"}) {
				t.Errorf("files in the target folder: %v", got)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "vmlinuz")); string(b) != "fake kernel 1.2.3" {
				t.Errorf("vmlinuz holds %q, not the image's kernel", b)
			}
			ipxe, _ := os.ReadFile(filepath.Join(dir, "boot.ipxe"))
			for _, line := range []string{"#!ipxe\n", "\nkernel vmlinuz initrd=" + tc.initrd + " console=ttyS0 quiet\n", "\ninitrd " + tc.initrd + "\n", "\nboot\n"} {
				if !strings.Contains(string(ipxe), line) {
					t.Errorf("boot.ipxe lacks %q:\n%s", line, ipxe)
				}
			}
			if !strings.HasPrefix(string(ipxe), "#!ipxe\n") {
				t.Errorf("boot.ipxe does not start with #!ipxe:\n%s", ipxe)
			}
			pxe, _ := os.ReadFile(filepath.Join(dir, "pxelinux.cfg"))
			for _, line := range []string{"\nDEFAULT fgimg\n", "\nLABEL fgimg\n", "\n  KERNEL vmlinuz\n", "\n  APPEND initrd=" + tc.initrd + " console=ttyS0 quiet\n"} {
				if !strings.Contains(string(pxe), line) {
					t.Errorf("pxelinux.cfg lacks %q:\n%s", line, pxe)
				}
			}
			checkNetbootInitramfs(t, root, readNetbootInitramfs(t, filepath.Join(dir, tc.initrd)))
		})
	}
	if _, err := os.Lstat(filepath.Join(root, "init")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the writer changed the image's tree: /init %v", err)
	}
}

// checkNetbootInitramfs compares the initramfs with the tree it was made from.
func checkNetbootInitramfs(t *testing.T, root string, es []netbootEntry) {
	t.Helper()
	m := map[string]netbootEntry{}
	for i, e := range es {
		if _, dup := m[e.Name]; dup {
			t.Errorf("%s twice in the initramfs", e.Name)
		}
		m[e.Name] = e
		if i > 0 && e.Name != "init" {
			if parent := filepath.Dir(e.Name); parent != "." {
				if _, ok := m[parent]; !ok {
					t.Errorf("%s comes before its directory", e.Name)
				}
			}
		}
	}
	// Every name of the tree is there, with its type, mode and contents.
	var n int
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		n++
		e, ok := m[rel]
		if !ok {
			t.Errorf("%s missing from the initramfs", rel)
			return nil
		}
		var st unix.Stat_t
		unix.Lstat(p, &st)
		if e.Mode != st.Mode || e.Uid != st.Uid || e.Gid != st.Gid {
			t.Errorf("%s: mode %o owner %d:%d, tree has %o %d:%d", rel, e.Mode, e.Uid, e.Gid, st.Mode, st.Uid, st.Gid)
		}
		if e.Mtime != testkit.Epoch.Unix() {
			t.Errorf("%s: mtime %d, want %d", rel, e.Mtime, testkit.Epoch.Unix())
		}
		if fi.Mode().IsRegular() && e.Nlink == 1 {
			b, _ := os.ReadFile(p)
			if string(b) != e.data {
				t.Errorf("%s: contents differ", rel)
			}
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			if e.Linkname != target {
				t.Errorf("%s: symlink to %q, want %q", rel, e.Linkname, target)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != n+1 { // the tree and /init
		t.Errorf("%d entries in the initramfs, %d in the tree plus /init", len(es), n)
	}
	if e := m["init"]; e.Mode != cpio.TypeSymlink|0o777 || e.Linkname != "sbin/init" {
		t.Errorf("/init: mode %o -> %q, want a symlink to sbin/init", e.Mode, e.Linkname)
	}
	a, b := m[testkit.HardLinkA], m[testkit.HardLinkB]
	if a.Ino != b.Ino || a.Nlink != 2 || b.Nlink != 2 || a.data != "one inode, two names\n" || b.Size != 0 {
		t.Errorf("hard links: %s ino %d nlink %d data %q; %s ino %d nlink %d size %d", testkit.HardLinkA, a.Ino, a.Nlink, a.data,
			testkit.HardLinkB, b.Ino, b.Nlink, b.Size)
	}
	if os.Geteuid() == 0 {
		if e := m[testkit.DevNull]; e.Mode != cpio.TypeChar|0o666 || e.RdevMajor != 1 || e.RdevMinor != 3 {
			t.Errorf("%s: mode %o device %d,%d, want a character device 1,3", testkit.DevNull, e.Mode, e.RdevMajor, e.RdevMinor)
		}
		if e := m["etc/shadow"]; e.Gid != 42 || e.Mode != cpio.TypeReg|0o640 {
			t.Errorf("etc/shadow: mode %o group %d", e.Mode, e.Gid)
		}
	}
}

func TestNetbootDeterministic(t *testing.T) {
	root := netbootTree(t)
	// Past several zstd jobs and gzip blocks, so both compress in parallel.
	if err := os.WriteFile(filepath.Join(root, "usr/share/big"), text(3, 20<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"gzip", "zstd"} {
		spec := &NetbootSpec{Compression: c, KernelArgs: []string{"console=ttyS0"}}
		d1, arts := writeNetbootTarget(t, netbootInput(root), spec)
		d2, _ := writeNetbootTarget(t, netbootInput(root), spec)
		for _, a := range arts {
			b1, _ := os.ReadFile(filepath.Join(d1, a.Path))
			b2, _ := os.ReadFile(filepath.Join(d2, a.Path))
			if !bytes.Equal(b1, b2) {
				t.Errorf("%s: %s differs between two writes of the same image", c, a.Path)
			}
		}
	}
}

// WriteRootBoot, what a warewulf target boots (Warewulf.Boot says Root),
// is the netboot kind's kernel and initramfs, byte for byte.
func TestWriteRootBootIsNetboot(t *testing.T) {
	b, err := Warewulf{}.Boot(&WarewulfSpec{})
	if err != nil || !b.Root {
		t.Fatalf("Warewulf.Boot: %+v, %v; want a boot of the image's root", b, err)
	}
	root := netbootTree(t)
	for _, c := range []string{"none", "gzip"} {
		nb, arts := writeNetbootTarget(t, netbootInput(root), &NetbootSpec{Compression: c})
		dir := t.TempDir()
		kernel, initrd, err := WriteRootBoot(context.Background(), netbootInput(root), c, dir)
		if err != nil {
			t.Fatal(err)
		}
		for i, got := range []string{kernel, initrd} {
			want := filepath.Join(nb, arts[i].Path)
			b1, _ := os.ReadFile(want)
			b2, err := os.ReadFile(got)
			if err != nil || !bytes.Equal(b1, b2) || filepath.Dir(got) != dir {
				t.Errorf("%s: %s (%v) differs from the netboot kind's %s", c, got, err, arts[i].Path)
			}
		}
	}
	if _, _, err := WriteRootBoot(context.Background(), netbootInput(t.TempDir()), "none", t.TempDir()); err == nil || !strings.Contains(err.Error(), "has no kernel in /boot") {
		t.Errorf("an image without a kernel: %v", err)
	}
}

func TestNetbootEpochClamps(t *testing.T) {
	root := netbootTree(t)
	in := netbootInput(root)
	early := testkit.Epoch.Add(-24 * time.Hour)
	in.SourceDateEpoch = &early
	dir, _ := writeNetbootTarget(t, in, &NetbootSpec{Compression: "none"})
	for _, e := range readNetbootInitramfs(t, filepath.Join(dir, "initramfs.cpio")) {
		if e.Mtime != early.Unix() {
			t.Errorf("%s: mtime %d, want the epoch %d", e.Name, e.Mtime, early.Unix())
		}
	}
}

func TestNetbootNoKernel(t *testing.T) {
	root := t.TempDir()
	testkit.BusyboxRootfs(t, root)
	os.Mkdir(filepath.Join(root, "boot"), 0o755)
	os.WriteFile(filepath.Join(root, "boot/config-6.1.0-9-amd64"), nil, 0o644)
	in := netbootInput(root)
	in.Image.Name = "x"
	dir := t.TempDir()
	_, err := Netboot{}.Write(context.Background(), in, &NetbootSpec{}, dir)
	want := `image "x" has no kernel in /boot: add linux-image-amd64 (Debian) to its packages`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got error %v, want %q", err, want)
	}
	if files := listFiles(t, dir); len(files) != 0 {
		t.Errorf("failed write left %v", files)
	}
}

// netbootRoot is a tree with just what the files map names (a trailing
// "/" makes a directory, "-> x" a symlink to x).
func netbootRoot(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		var err error
		switch {
		case strings.HasSuffix(name, "/"):
			err = os.MkdirAll(p, 0o755)
		case strings.HasPrefix(body, "-> "):
			err = os.Symlink(strings.TrimPrefix(body, "-> "), p)
		default:
			err = os.WriteFile(p, []byte(body), 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestNetbootKernelChoice(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"newest version", map[string]string{
			"boot/vmlinuz-6.1.0-9-amd64":   "6.1.0-9",
			"boot/vmlinuz-6.1.0-18-amd64":  "6.1.0-18",
			"boot/vmlinuz-5.10.0-30-amd64": "5.10.0-30",
			"boot/vmlinuz":                 "-> vmlinuz-5.10.0-30-amd64",
			"boot/config-7.0.0":            "not a kernel",
		}, "6.1.0-18"},
		{"root symlink, absolute, resolved in the image", map[string]string{
			"vmlinuz":     "-> /boot/kernel",
			"boot/kernel": "image kernel",
		}, "image kernel"},
		{"boot symlink", map[string]string{
			"boot/vmlinuz": "-> ../kernels/k1",
			"kernels/k1":   "k1",
		}, "k1"},
		{"dangling vmlinuz-* skipped", map[string]string{
			"boot/vmlinuz-9.9": "-> nowhere",
			"boot/vmlinuz-1.0": "1.0",
		}, "1.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.files["sbin/init"] = "init"
			dir, _ := writeNetbootTarget(t, netbootInput(netbootRoot(t, tc.files)), &NetbootSpec{Compression: "none"})
			if b, _ := os.ReadFile(filepath.Join(dir, "vmlinuz")); string(b) != tc.want {
				t.Errorf("vmlinuz holds %q, want %q", b, tc.want)
			}
		})
	}
	// An absolute symlink must not reach the host's /boot.
	root := netbootRoot(t, map[string]string{"vmlinuz": "-> /etc/hostname", "sbin/init": "init"})
	_, err := Netboot{}.Write(context.Background(), netbootInput(root), &NetbootSpec{}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "has no kernel") {
		t.Errorf("vmlinuz pointing at a file the image lacks: got %v", err)
	}
}

func TestNetbootVersionOrder(t *testing.T) {
	ordered := []string{"vmlinuz-0-rescue", "vmlinuz-4.19.0-9-amd64", "vmlinuz-5.10.0-9-amd64", "vmlinuz-5.10.0-10-amd64",
		"vmlinuz-6.1.0-2-amd64", "vmlinuz-6.1.0-18-amd64", "vmlinuz-6.1.0-18-cloud-amd64", "vmlinuz-6.10.1"}
	for i := range ordered {
		for j := range ordered {
			got := compareKernelVersions(ordered[i], ordered[j])
			if (i < j && got >= 0) || (i > j && got <= 0) || (i == j && got != 0) {
				t.Errorf("compareKernelVersions(%q, %q) = %d", ordered[i], ordered[j], got)
			}
		}
	}
}

func TestNetbootInit(t *testing.T) {
	initOf := func(t *testing.T, files map[string]string) (netbootEntry, error) {
		t.Helper()
		files["boot/vmlinuz-1"] = "k"
		root := netbootRoot(t, files)
		dir := t.TempDir()
		_, err := Netboot{}.Write(context.Background(), netbootInput(root), &NetbootSpec{Compression: "none"}, dir)
		if err != nil {
			return netbootEntry{}, err
		}
		for _, e := range readNetbootInitramfs(t, filepath.Join(dir, "initramfs.cpio")) {
			if e.Name == "init" {
				return e, nil
			}
		}
		t.Fatal("no /init in the initramfs")
		return netbootEntry{}, nil
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		mode  uint32
		want  string // symlink target or contents
	}{
		{"image's own /init kept", map[string]string{"init": "#!/bin/sh\n", "sbin/init": "x"}, cpio.TypeReg | 0o755, "#!/bin/sh\n"},
		{"sbin/init through merged /usr", map[string]string{"sbin": "-> usr/sbin", "usr/sbin/init": "-> ../lib/systemd/systemd",
			"usr/lib/systemd/systemd": "systemd"}, cpio.TypeSymlink | 0o777, "sbin/init"},
		{"systemd without sbin/init", map[string]string{"lib/systemd/systemd": "systemd"}, cpio.TypeSymlink | 0o777, "lib/systemd/systemd"},
		{"systemd in /usr", map[string]string{"usr/lib/systemd/systemd": "systemd"}, cpio.TypeSymlink | 0o777, "usr/lib/systemd/systemd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := initOf(t, tc.files)
			if err != nil {
				t.Fatal(err)
			}
			if got := e.Linkname + e.data; e.Mode != tc.mode || got != tc.want {
				t.Errorf("/init: mode %o, %q; want %o, %q", e.Mode, got, tc.mode, tc.want)
			}
		})
	}
	_, err := initOf(t, map[string]string{"sbin/": "", "sbin/init": "-> /nowhere"})
	if err == nil || !strings.Contains(err.Error(), "no /init, /sbin/init or systemd") {
		t.Errorf("image with nothing to start: got %v", err)
	}
}

func TestNetbootRejects(t *testing.T) {
	root := netbootTree(t)
	for _, tc := range []struct {
		name string
		in   *Input
		spec Spec
		want string
	}{
		{"kind", netbootInput(root), &TarSpec{}, `netboot writer given a "tar" target`},
		{"compression", netbootInput(root), &NetbootSpec{Compression: "xz"}, `unknown compression "xz"`},
		{"newline in args", netbootInput(root), &NetbootSpec{KernelArgs: []string{"quiet\nshell"}}, "control character"},
		{"empty arg", netbootInput(root), &NetbootSpec{KernelArgs: []string{""}}, "empty kernel argument"},
		{"no root", &Input{Image: ImageInfo{Name: "x"}}, &NetbootSpec{}, "Input.Root is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Netboot{}.Write(context.Background(), tc.in, tc.spec, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestNetbootCancelled(t *testing.T) {
	root := netbootTree(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	_, err := Netboot{}.Write(ctx, netbootInput(root), &NetbootSpec{}, dir)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

// netbootInitScript is the busybox /init of the boot test: it checks what the
// initramfs must carry and prints FGIMG-NETBOOT-OK (spelt so that the
// script's own text never contains it) before powering off.
const netbootInitScript = `#!/bin/sh
export PATH=/bin
r=OK
fail() { echo "FGIMG-CHECK-FAILED: $*"; r=FAILED; }
[ -c /dev/null ] || fail "/dev/null is not a character device"
[ "$(stat -c %t,%T /dev/null)" = 1,3 ] || fail "/dev/null is device $(stat -c %t,%T /dev/null)"
echo discard > /dev/null || fail "cannot write /dev/null"
a=$(stat -c %i /usr/share/testkit/hardlink-a)
b=$(stat -c %i /usr/share/testkit/hardlink-b)
[ -n "$a" ] && [ "$a" = "$b" ] || fail "hard link pair has inodes $a and $b"
[ "$(stat -c %h /usr/share/testkit/hardlink-b)" = 2 ] || fail "hard link count $(stat -c %h /usr/share/testkit/hardlink-b)"
[ "$(cat /usr/share/testkit/hardlink-b)" = "one inode, two names" ] || fail "hardlink-b holds $(cat /usr/share/testkit/hardlink-b)"
[ "$(stat -c %u:%g:%a /etc/shadow)" = 0:42:640 ] || fail "/etc/shadow is $(stat -c %u:%g:%a /etc/shadow)"
[ "$(stat -c %a /tmp)" = 1777 ] || fail "/tmp has mode $(stat -c %a /tmp)"
[ "$(readlink /bin/sh)" = busybox ] || fail "/bin/sh links to $(readlink /bin/sh)"
echo "FGIMG-NETBOOT-$r"
/bin/busybox poweroff -f
`

// TestNetbootBootsInQEMU boots a real Debian kernel with the initramfs of
// a busybox image whose /init checks that device nodes, hard links,
// owners and modes survived.
func TestNetbootBootsInQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under emulation (about 10 s each); skipped in -short mode")
	}
	qemu := testkit.Need(t, "qemu-system-x86_64")[0]
	if os.Geteuid() != 0 {
		t.Skip("needs root to put a device node in the image")
	}
	root := bootableBusybox(t, netbootInitScript)
	args := []string{"console=ttyS0", "rdinit=/init", "panic=-1"}
	for _, c := range []string{"gzip", "zstd"} {
		t.Run(c, func(t *testing.T) {
			dir, arts := writeNetbootTarget(t, netbootInput(root), &NetbootSpec{Compression: c, KernelArgs: args})
			out, ok := netbootQEMU(t, qemu, filepath.Join(dir, arts[0].Path), filepath.Join(dir, arts[1].Path), strings.Join(args, " "))
			if !ok {
				if len(out) > 6000 {
					out = "...\n" + out[len(out)-6000:]
				}
				t.Fatalf("no FGIMG-NETBOOT-OK on the serial console:\n%s", out)
			}
		})
	}
}

// bootableBusybox makes a busybox root filesystem with a real Debian
// kernel in /boot and init as its /init.
func bootableBusybox(t *testing.T, init string) string {
	t.Helper()
	kroot, kversion := testkit.DebianKernel(t)
	root := t.TempDir()
	testkit.BusyboxRootfs(t, root)
	os.Mkdir(filepath.Join(root, "boot"), 0o755)
	b, err := os.ReadFile(filepath.Join(kroot, "boot", "vmlinuz-"+kversion))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "boot/vmlinuz-6.1.0-test-amd64"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "init"), []byte(init), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// netbootQEMU boots kernel and initrd and reads the serial console until the
// marker, a failure, the VM's end or 60 s; QEMU is killed in every case.
func netbootQEMU(t *testing.T, qemu, kernel, initrd, args string) (string, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", args)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout // QEMU's own complaints, with the console
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	var log strings.Builder
	sc := bufio.NewScanner(pipe)
	for sc.Scan() {
		line := sc.Text()
		log.WriteString(line + "\n")
		if strings.Contains(line, "FGIMG-NETBOOT-OK") {
			return log.String(), true
		}
		if strings.Contains(line, "FGIMG-NETBOOT-FAILED") {
			break
		}
	}
	if ctx.Err() != nil {
		log.WriteString("(timed out after 60 s)\n")
	}
	return log.String(), false
}

// The benchmark tree: at least 1 GiB in 55,000 files, copied from the
// host's /usr/share and /usr/lib (topped up with generated text when they
// are too small), kept under /tmp between runs (about 1.2 GB).
const (
	netbootBenchDir   = "fgimg-netboot-bench-v2"
	netbootBenchBytes = 1<<30 + 64<<20
	netbootBenchFiles = 55_000
)

func netbootBenchTree(b *testing.B) string {
	top := filepath.Join(os.TempDir(), netbootBenchDir)
	tree := filepath.Join(top, "tree")
	stamp := filepath.Join(top, "complete")
	if _, err := os.Stat(stamp); err == nil {
		return tree
	}
	os.RemoveAll(top)
	if err := os.MkdirAll(tree, 0o755); err != nil {
		b.Fatal(err)
	}
	var files, size int64
	enough := func() bool { return files >= netbootBenchFiles && size >= netbootBenchBytes }
	buf := make([]byte, 1<<20)
	for _, src := range []string{"/usr/share", "/usr/lib"} {
		err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
			if enough() {
				return filepath.SkipAll
			}
			if err != nil {
				return nil // unreadable: leave it out
			}
			dst := filepath.Join(tree, p)
			switch {
			case fi.IsDir():
				return os.MkdirAll(dst, 0o755)
			case fi.Mode()&os.ModeSymlink != 0:
				target, err := os.Readlink(p)
				if err == nil {
					os.Symlink(target, dst)
				}
			case fi.Mode().IsRegular():
				if size >= netbootBenchBytes && fi.Size() > 64<<10 {
					return nil // enough bytes: only small files to reach the count
				}
				in, err := os.Open(p)
				if err != nil {
					return nil
				}
				defer in.Close()
				out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
				if err != nil {
					return err
				}
				n, err := io.CopyBuffer(out, in, buf)
				if cerr := out.Close(); err == nil {
					err = cerr
				}
				files++
				size += n
				return err
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; !enough(); i++ { // top up with text
		p := filepath.Join(tree, "srv/gen", fmt.Sprintf("d%03d/f%05d.txt", i/500, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		body := text(uint64(i), 4096+i%60000)
		if err := os.WriteFile(p, body, 0o644); err != nil {
			b.Fatal(err)
		}
		files++
		size += int64(len(body))
	}
	// A kernel (incompressible, as a real one is) and an init.
	kernel := make([]byte, 8<<20)
	rand.NewChaCha8([32]byte{}).Read(kernel)
	os.MkdirAll(filepath.Join(tree, "boot"), 0o755)
	os.MkdirAll(filepath.Join(tree, "sbin"), 0o755)
	if err := os.WriteFile(filepath.Join(tree, "boot/vmlinuz-6.1.0-bench-amd64"), kernel, 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "sbin/init"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(stamp, fmt.Appendf(nil, "%d files, %d bytes\n", files, size), 0o644); err != nil {
		b.Fatal(err)
	}
	return tree
}

// TestNetbootBenchHelper is BenchmarkNetboot's child process: it writes
// one netboot target so that the parent can read its peak memory.
func TestNetbootBenchHelper(t *testing.T) {
	root := os.Getenv("FGIMG_NETBOOT_BENCH_ROOT")
	if root == "" {
		t.Skip("the child process of BenchmarkNetboot; runs only from there")
	}
	in := &Input{Image: ImageInfo{Name: "bench", ID: "sha256:bench"}, Root: root}
	spec := &NetbootSpec{Compression: os.Getenv("FGIMG_NETBOOT_BENCH_COMPRESSION"), KernelArgs: []string{"console=ttyS0"}}
	if _, err := (Netboot{}).Write(context.Background(), in, spec, os.Getenv("FGIMG_NETBOOT_BENCH_OUT")); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkNetboot compares the netboot target with the shell pipelines
// an administrator would use, on a tree of over 1 GiB and 55,000 files:
//
//	go test -run '^$' -bench Netboot -benchtime 3x ./targets/
//
// The bar: gzip in at most 0.8 times `find . | cpio -o -H newc | pigz -p2`,
// zstd in at most the time of `... | zstd -T2 -3`, under 256 MiB peak
// RSS. fgimg runs in a child process (this test binary), so its time
// includes starting up and its peak RSS is its own.
func BenchmarkNetboot(b *testing.B) {
	testkit.Need(b, "cpio", "pigz", "zstd")
	tree := netbootBenchTree(b)
	out := b.TempDir()
	run := func(cmd *exec.Cmd) (time.Duration, int64) {
		b.Helper()
		start := time.Now()
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", cmd.Args, err, o)
		}
		d := time.Since(start)
		return d, cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	}
	fgimg := func(compression string) (time.Duration, int64, int64) {
		dir := filepath.Join(out, "fgimg-"+compression)
		os.RemoveAll(dir)
		os.Mkdir(dir, 0o755)
		cmd := exec.Command(os.Args[0], "-test.run=^TestNetbootBenchHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FGIMG_NETBOOT_BENCH_ROOT="+tree, "FGIMG_NETBOOT_BENCH_COMPRESSION="+compression,
			"FGIMG_NETBOOT_BENCH_OUT="+dir, "GOMAXPROCS=2")
		d, rss := run(cmd)
		name := map[string]string{"gzip": "initramfs.cpio.gz", "zstd": "initramfs.cpio.zst"}[compression]
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		return d, rss, st.Size()
	}
	shell := func(pipeline string) (time.Duration, int64) {
		cmd := exec.Command("sh", "-c", pipeline+` > "$1"`, "sh", filepath.Join(out, "shell.out"))
		cmd.Dir = tree
		d, _ := run(cmd)
		st, _ := os.Stat(filepath.Join(out, "shell.out"))
		return d, st.Size()
	}
	var fgGz, fgZst, pigz, zst time.Duration
	var peak, sizeFgGz, sizePigz, sizeFgZst, sizeZstd int64
	shell("find . | cpio --quiet -o -H newc") // warm the page cache
	edit := filepath.Join(tree, "etc/motd")
	os.MkdirAll(filepath.Dir(edit), 0o755)
	for i := 0; b.Loop(); i++ {
		// A one-file edit, as a rebuild after changing one file would see.
		if err := os.WriteFile(edit, fmt.Appendf(nil, "benchmark run %d at %s\n", i, time.Now()), 0o644); err != nil {
			b.Fatal(err)
		}
		d1, rss1, s1 := fgimg("gzip")
		d2, s2 := shell("find . | cpio --quiet -o -H newc | pigz -p2")
		d3, rss2, s3 := fgimg("zstd")
		d4, s4 := shell("find . | cpio --quiet -o -H newc | zstd -q -T2 -3")
		fgGz, pigz, fgZst, zst = fgGz+d1, pigz+d2, fgZst+d3, zst+d4
		peak = max(peak, rss1, rss2)
		sizeFgGz, sizePigz, sizeFgZst, sizeZstd = s1, s2, s3, s4
		b.Logf("run %d: fgimg gzip %v, cpio|pigz %v; fgimg zstd %v, cpio|zstd %v; peak RSS %d MiB", i, d1.Round(time.Millisecond),
			d2.Round(time.Millisecond), d3.Round(time.Millisecond), d4.Round(time.Millisecond), max(rss1, rss2)>>20)
	}
	gzRatio, zstRatio := fgGz.Seconds()/pigz.Seconds(), fgZst.Seconds()/zst.Seconds()
	b.ReportMetric(gzRatio, "x-of-cpio-pigz")
	b.ReportMetric(zstRatio, "x-of-cpio-zstd")
	b.ReportMetric(float64(peak)/(1<<20), "MiB-peak-rss")
	b.ReportMetric(float64(sizeFgGz)/float64(sizePigz), "gz-size-x-of-pigz")
	b.ReportMetric(float64(sizeFgZst)/float64(sizeZstd), "zst-size-x-of-zstd")
	if gzRatio > 0.8 {
		b.Logf("gzip bar missed: %.2f x the time of cpio | pigz -p2 (want <= 0.8)", gzRatio)
	}
	if zstRatio > 1.0 {
		b.Logf("zstd bar missed: %.2f x the time of cpio | zstd -T2 -3 (want <= 1.0)", zstRatio)
	}
	if peak > 256<<20 {
		b.Errorf("peak RSS %d MiB, over the 256 MiB bar", peak>>20)
	}
}
