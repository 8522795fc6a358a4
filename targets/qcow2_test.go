package targets

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/fgimg/fgimg/internal/cpio"
	"github.com/fgimg/fgimg/internal/qcow2"
	"github.com/fgimg/fgimg/internal/qemu"
	"github.com/fgimg/fgimg/internal/testkit"
)

func needQemuImg(t testing.TB) {
	t.Helper()
	testkit.Need(t, "qemu-img", "qemu-io")
}

// qcow2Check runs qemu-img check, which must find no corruption, leak or
// error, and qemu-img compare against the raw disk, which must find the
// same contents.
func qcow2Check(t testing.TB, qcow, raw string) {
	t.Helper()
	out, err := exec.Command("qemu-img", "check", "-f", "qcow2", "--output=json", qcow).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	var res map[string]any
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	for _, k := range []string{"corruptions", "leaks", "check-errors"} {
		if v, ok := res[k]; ok && v != float64(0) {
			t.Errorf("qemu-img check: %s = %v", k, v)
		}
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare %s %s: %v\n%s", raw, qcow, err, out)
	}
}

func TestQCOW2Target(t *testing.T) {
	needDiskTools(t)
	needQemuImg(t)
	args := []string{"console=ttyS0"}
	rawDir := t.TempDir()
	if _, err := (Raw{}).Write(context.Background(), diskInput(diskTree(t)), &RawSpec{DiskSpec{KernelArgs: args}}, rawDir); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(rawDir, "disk.raw")
	rawInfo, _ := os.Stat(raw)
	rawUsed := rawInfo.Sys().(*syscall.Stat_t).Blocks * 512
	info := diskInfoOf(t, diskInput(diskTree(t)), &DiskSpec{KernelArgs: args})

	var sizes [2]int64
	for i, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compress=%v", compress), func(t *testing.T) {
			spec := &QCOW2Spec{DiskSpec: DiskSpec{KernelArgs: args}, Compress: compress}
			dir := t.TempDir()
			arts, err := (QCOW2{}).Write(context.Background(), diskInput(diskTree(t)), spec, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(arts) != 1 || arts[0].Path != "disk.qcow2" || arts[0].MediaType != MediaTypeQCOW2 {
				t.Fatalf("artifacts = %+v", arts)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("the target folder holds %d files, want disk.qcow2 alone (the raw disk removed)", len(ents))
			}
			img := filepath.Join(dir, "disk.qcow2")
			qcow2Check(t, img, raw)

			out, err := exec.Command("qemu-img", "info", "-f", "qcow2", "--output=json", img).Output()
			if err != nil {
				t.Fatal(err)
			}
			var qi struct {
				VirtualSize int64 `json:"virtual-size"`
				ClusterSize int64 `json:"cluster-size"`
				Specific    struct {
					Data struct{ Compat string } `json:"data"`
				} `json:"format-specific"`
			}
			if err := json.Unmarshal(out, &qi); err != nil {
				t.Fatal(err)
			}
			if qi.VirtualSize != info.Size || qi.ClusterSize != 64<<10 || qi.Specific.Data.Compat != "1.1" {
				t.Errorf("qemu-img info: %s", out)
			}
			// What a guest reads: the MBR signature, zeros between the
			// GPT and the ESP, the ESP's FAT boot sector signature, and
			// the zeros before the backup GPT.
			qio := exec.Command("qemu-io", "-f", "qcow2", "-r",
				"-c", "read -P 0x55 510 1", "-c", "read -P 0xaa 511 1",
				"-c", fmt.Sprintf("read -P 0 %d %d", 34*512, info.ESP.Start-34*512),
				"-c", fmt.Sprintf("read -P 0x55 %d 1", info.ESP.Start+510),
				"-c", fmt.Sprintf("read -P 0 %d %d", info.Root.Start+info.Root.Size, diskMiB-33*512), img)
			if out, err := qio.CombinedOutput(); err != nil || bytes.Contains(out, []byte("failed")) {
				t.Errorf("qemu-io: %v\n%s", err, out)
			}

			st, _ := os.Stat(img)
			sizes[i] = st.Size()
			// All-zero clusters stay unallocated: the image is about the
			// raw disk's allocated blocks, not its size.
			if !compress && (st.Size() > rawUsed+8*diskMiB || st.Size() > info.Size/4) {
				t.Errorf("qcow2 is %d bytes for a %d byte disk with %d bytes allocated", st.Size(), info.Size, rawUsed)
			}
			// Reproducible: again from a fresh tree, the same bytes.
			again := t.TempDir()
			if _, err := (QCOW2{}).Write(context.Background(), diskInput(diskTree(t)), spec, again); err != nil {
				t.Fatal(err)
			}
			if fileSum(t, img) != fileSum(t, filepath.Join(again, "disk.qcow2")) {
				t.Errorf("two builds of the same image differ")
			}
		})
	}
	if sizes[1] == 0 || sizes[1] >= sizes[0]/2 {
		t.Errorf("compressed %d bytes, uncompressed %d: compression hardly helped", sizes[1], sizes[0])
	}
}

func TestQCOW2TargetFailures(t *testing.T) {
	needDiskTools(t)
	dir := t.TempDir()
	if _, err := (QCOW2{}).Write(context.Background(), diskInput(diskTree(t)), &RawSpec{DiskSpec{}}, dir); err == nil {
		t.Error("a raw spec accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (QCOW2{}).Write(ctx, diskInput(diskTree(t)), &QCOW2Spec{DiskSpec: DiskSpec{}}, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	_, err := (QCOW2{}).Write(context.Background(), diskInput(diskTree(t)), &QCOW2Spec{DiskSpec: DiskSpec{Size: 10 * diskMiB}}, dir)
	if err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("a disk too small: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("failed writes left %d files behind", len(ents))
	}
	if w, err := For("qcow2"); err != nil || w != (QCOW2{}) {
		t.Errorf(`For("qcow2") = %v, %v`, w, err)
	}
}

// qcow2BootModules are the Debian kernel's modules the test initrd loads,
// in order, to mount the root file system from the virtio disk.
var qcow2BootModules = []string{
	"drivers/virtio/virtio_ring", "drivers/virtio/virtio", "drivers/virtio/virtio_pci_modern_dev",
	"drivers/virtio/virtio_pci_legacy_dev", "drivers/virtio/virtio_pci", "drivers/block/virtio_blk",
	"lib/crc16", "crypto/crc32c_generic", "fs/mbcache", "fs/jbd2/jbd2", "fs/ext4/ext4",
}

// qcow2BootInit is the test initrd's /init: it loads the virtio and ext4
// modules, mounts the disk's root partition read-only and checks files
// the image put there.
const qcow2BootInit = `#!/bin/sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sys /sys
$bb mount -t devtmpfs dev /dev
fail() { echo "FGIMG-QCOW2-BOOT-FAILED: $*"; $bb poweroff -f; }
for m in MODULES; do $bb insmod /lib/modules/$m.ko || fail "insmod $m"; done
dev=/dev/vda2
for i in $($bb seq 50); do [ -b $dev ] && break; $bb sleep 0.2; done
[ -b $dev ] || fail "no $dev: $($bb ls /sys/class/block)"
$bb mkdir -p /mnt
$bb mount -t ext4 -o ro $dev /mnt || fail "mounting $dev"
[ "$($bb cat /mnt/etc/fgimg-qcow2-marker)" = "written by the qcow2 test" ] || fail "marker: $($bb cat /mnt/etc/fgimg-qcow2-marker)"
$bb grep -q "^UUID=.*[[:space:]]/[[:space:]]" /mnt/etc/fstab || fail "fstab: $($bb cat /mnt/etc/fstab)"
echo "FGIMG-QCOW2-BOOT-OK from $dev"
$bb poweroff -f
`

// TestQCOW2BootsInQEMU boots a compressed qcow2 disk of a busybox image
// with a real Debian kernel, through SeaBIOS and syslinux and through
// OVMF and systemd-boot: the boot loader reads the kernel and initrd
// from the ESP, and the initrd mounts the ext4 root partition and checks
// a file in it, all through QEMU's qcow2 driver.
func TestQCOW2BootsInQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under emulation; skipped in -short mode")
	}
	testkit.Need(t, qemu.DefaultBinary)
	needDiskTools(t)
	kroot, version := testkit.DebianKernel(t)

	// The initrd: busybox, the modules and /init.
	initTree := t.TempDir()
	testkit.BusyboxRootfs(t, initTree)
	for _, d := range []string{"proc", "sys", "dev", "lib/modules"} {
		os.MkdirAll(filepath.Join(initTree, d), 0o755)
	}
	var names []string
	for _, m := range qcow2BootModules {
		name := filepath.Base(m)
		names = append(names, name)
		b, err := os.ReadFile(filepath.Join(kroot, "lib/modules", version, "kernel", m+".ko"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(initTree, "lib/modules", name+".ko"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	script := strings.Replace(qcow2BootInit, "MODULES", strings.Join(names, " "), 1)
	if err := os.WriteFile(filepath.Join(initTree, "init"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}

	// The image: busybox, the kernel, the initrd and a marker.
	root := t.TempDir()
	testkit.BusyboxRootfs(t, root)
	os.MkdirAll(filepath.Join(root, "boot"), 0o755)
	kernel, err := os.ReadFile(filepath.Join(kroot, "boot", "vmlinuz-"+version))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "boot/vmlinuz-"+version), kernel, 0o644); err != nil {
		t.Fatal(err)
	}
	var initrd bytes.Buffer
	zw := gzip.NewWriter(&initrd)
	if err := cpio.WriteTree(context.Background(), zw, initTree, cpio.TreeOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "boot/initrd.img-"+version), initrd.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/fgimg-qcow2-marker"), []byte("written by the qcow2 test\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	spec := &QCOW2Spec{DiskSpec: DiskSpec{Boot: BootHybrid, KernelArgs: []string{"console=ttyS0", "panic=-1"}}, Compress: true}
	adaptDisk(t, diskInput(root))
	if _, err := (QCOW2{}).Write(context.Background(), diskInput(root), spec, dir); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "disk.qcow2")
	for _, uefi := range []bool{false, true} {
		name := map[bool]string{false: "bios", true: "uefi"}[uefi]
		t.Run(name, func(t *testing.T) {
			if uefi {
				testkit.Need(t, qemu.DefaultOVMFCode, qemu.DefaultOVMFVars)
			}
			var console bytes.Buffer
			res, err := qemu.Boot(context.Background(), qemu.Options{
				Disk: disk, DiskFormat: "qcow2", UEFI: uefi, Memory: 512, NoNetwork: true,
				Expect: []string{"FGIMG-QCOW2-BOOT-OK", "FGIMG-QCOW2-BOOT-FAILED"}, Timeout: 4 * time.Minute,
				Console: &console, TempDir: t.TempDir(),
			})
			if err != nil || res.Marker != "FGIMG-QCOW2-BOOT-OK" {
				tail := console.String()
				if len(tail) > 6000 {
					tail = "...\n" + tail[len(tail)-6000:]
				}
				t.Fatalf("boot (%s): %v, %+v\n%s", name, err, res.Outcome, tail)
			}
			t.Logf("%s boot: %s after %v (%s)", name, res.Marker, res.Elapsed.Round(time.Second), res.Accel)
		})
	}
}

// qcow2BenchArgs is what BenchmarkQCOW2 hands its child process: a
// whole qcow2 target from Root into Out, or with Raw, the conversion of
// that raw disk alone.
type qcow2BenchArgs struct {
	Root, Raw, Out string
	Compress       bool
}

const qcow2BenchEnv = "FGIMG_QCOW2_BENCH"

// TestQCOW2BenchHelper is BenchmarkQCOW2's child process: it writes one
// qcow2 target, or converts one raw disk, so that the parent can read
// its time and peak memory.
func TestQCOW2BenchHelper(t *testing.T) {
	arg := os.Getenv(qcow2BenchEnv)
	if arg == "" {
		t.Skip("the child process of BenchmarkQCOW2; runs only from there")
	}
	var a qcow2BenchArgs
	if err := json.Unmarshal([]byte(arg), &a); err != nil {
		t.Fatal(err)
	}
	if a.Raw != "" {
		if _, err := qcow2.ConvertFile(context.Background(), filepath.Join(a.Out, "disk.qcow2"), a.Raw, qcow2.Options{Compress: a.Compress}); err != nil {
			t.Fatal(err)
		}
		return
	}
	in := &Input{Image: ImageInfo{Name: "bench", ID: "sha256:bench"}, Root: a.Root}
	spec := &QCOW2Spec{DiskSpec: DiskSpec{Boot: BootNone}, Compress: a.Compress}
	if _, err := (QCOW2{}).Write(context.Background(), in, spec, a.Out); err != nil {
		t.Fatal(err)
	}
}

// qcow2BenchRoot mounts a scratch overlay of tree, as the engine gives
// writers, as the engine gives writers.
func qcow2BenchRoot(b *testing.B, tree string) string {
	dir := b.TempDir()
	for _, d := range []string{"upper", "work", "root"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	root := filepath.Join(dir, "root")
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", tree, filepath.Join(dir, "upper"), filepath.Join(dir, "work"))
	if err := syscall.Mount("overlay", root, "overlay", 0, opts); err != nil {
		b.Skipf("cannot mount a scratch overlay (needs root): %v", err)
	}
	b.Cleanup(func() { syscall.Unmount(root, syscall.MNT_DETACH) })
	return root
}

// BenchmarkQCOW2 compares the qcow2 target with what an administrator
// would run, on the netboot benchmark's tree (over 1 GiB in 55,000
// files, so a disk of over 2 GB), side by side in one run:
//
//	go test -run '^$' -bench QCOW2 -benchtime 1x ./targets/
//
// The bars: plain-x <= 1, the whole uncompressed target (building the
// raw disk and converting it) against `mkfs.ext4 -d` of the same tree
// plus `qemu-img convert -O qcow2`; z-x <= 0.5, compressing a raw disk
// the target built against `qemu-img convert -c -O qcow2` of the same
// file (convert-x is the same without -c); peak-RSS-MB < 256, the most
// any of fgimg's runs used. fgimg runs in a child process (this test
// binary), so its times include starting up and its peak RSS is its own.
// Every measurement starts after a sync(2), so that none pays for
// another's writeback, and the order of the runs alternates.
func BenchmarkQCOW2(b *testing.B) {
	mkfs := testkit.Need(b, "mkfs.ext4", "qemu-img")[0]
	root := qcow2BenchRoot(b, netbootBenchTree(b))
	work := b.TempDir()
	// The target's raw disk, for the conversions alone, and its layout,
	// for a reference ext4 file system of the root partition's size.
	disk := filepath.Join(work, "disk.raw")
	info, err := BuildDisk(context.Background(), &Input{Image: ImageInfo{Name: "bench", ID: "sha256:bench"}, Root: root},
		&DiskSpec{Boot: BootNone}, disk)
	if err != nil {
		b.Fatal(err)
	}
	// Each measurement starts with no dirty pages of another's to write
	// back; the reference's two commands run back to back, as one.
	sync := true
	timed := func(cmd *exec.Cmd) (time.Duration, int64) {
		b.Helper()
		if sync {
			syscall.Sync()
		}
		sync = true
		start := time.Now()
		if o, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", cmd.Args, err, o)
		}
		return time.Since(start), cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
	}
	out := filepath.Join(work, "out")
	fgimg := func(a qcow2BenchArgs) (time.Duration, int64, int64) {
		os.RemoveAll(out)
		os.Mkdir(out, 0o755)
		a.Out = out
		arg, _ := json.Marshal(a)
		cmd := exec.Command(os.Args[0], "-test.run=^TestQCOW2BenchHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), qcow2BenchEnv+"="+string(arg))
		d, rss := timed(cmd)
		size := fileSizeOf(b, filepath.Join(out, "disk.qcow2"))
		os.RemoveAll(out)
		return d, rss, size
	}
	qemuImg := func(args ...string) (time.Duration, int64) {
		ref := filepath.Join(work, "ref.qcow2")
		os.Remove(ref)
		d, _ := timed(exec.Command("qemu-img", append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, args...), ref)...))
		size := fileSizeOf(b, ref)
		os.Remove(ref)
		return d, size
	}
	var sum struct{ target, mkfs, qconv, conv, qconv2, qconvZ, convZ time.Duration }
	var rss, size, qsize, sizeZ, qsizeZ int64
	target := func() {
		d, r, s := fgimg(qcow2BenchArgs{Root: root})
		sum.target += d
		rss, size = max(rss, r), s
	}
	reference := func() {
		ref := filepath.Join(work, "ref.raw")
		os.Remove(ref)
		d, _ := timed(exec.Command(mkfs, "-q", "-F", "-d", root, ref, fmt.Sprint(info.Root.Size>>10)+"k"))
		sum.mkfs += d
		sync = false
		d, qsize = qemuImg(ref)
		sum.qconv += d
		os.Remove(ref)
	}
	convert := func() {
		d, r, _ := fgimg(qcow2BenchArgs{Raw: disk})
		sum.conv += d
		rss = max(rss, r)
	}
	qemuConvert := func() {
		d, _ := qemuImg(disk)
		sum.qconv2 += d
	}
	convertZ := func() {
		d, r, s := fgimg(qcow2BenchArgs{Raw: disk, Compress: true})
		sum.convZ += d
		rss, sizeZ = max(rss, r), s
	}
	qemuConvertZ := func() {
		var d time.Duration
		d, qsizeZ = qemuImg("-c", disk)
		sum.qconvZ += d
	}
	// The order of the runs alternates, so that neither side always
	// finds the page cache in the state the other left it in.
	n := 0
	for b.Loop() {
		n++
		if n%2 == 1 {
			target()
			reference()
		} else {
			reference()
			target()
		}
		// Both converters read the disk from the page cache.
		warm(b, disk)
		convert()
		qemuConvert()
		qemuConvert()
		convert()
		if n%2 == 1 {
			convertZ()
			qemuConvertZ()
		} else {
			qemuConvertZ()
			convertZ()
		}
	}
	sec := func(d time.Duration) float64 { return d.Seconds() / float64(n) }
	b.ReportMetric(sec(sum.target), "target-s")
	b.ReportMetric(sec(sum.mkfs+sum.qconv), "mkfs+qemu-img-s")
	b.ReportMetric(sec(sum.convZ), "convert-c-s")
	b.ReportMetric(sec(sum.qconvZ), "qemu-img-c-s")
	b.ReportMetric(sum.target.Seconds()/(sum.mkfs+sum.qconv).Seconds(), "plain-x")
	b.ReportMetric(sum.conv.Seconds()/sum.qconv2.Seconds(), "convert-x")
	b.ReportMetric(sum.convZ.Seconds()/sum.qconvZ.Seconds(), "z-x")
	b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MB")
	b.Logf("disk %d MB: qcow2 %d MB (qemu-img %d MB), compressed %d MB (qemu-img -c %d MB); mkfs.ext4 -d %.1fs, qemu-img convert %.1fs; the disk alone: qemu-img convert %.2fs, fgimg's %.2fs",
		info.Size>>20, size>>20, qsize>>20, sizeZ>>20, qsizeZ>>20, sec(sum.mkfs), sec(sum.qconv), sec(sum.qconv2)/2, sec(sum.conv)/2)
}

// warm reads a file into the page cache.
func warm(b *testing.B, p string) {
	f, err := os.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(io.Discard, f); err != nil {
		b.Fatal(err)
	}
}

func fileSizeOf(b *testing.B, p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		b.Fatal(err)
	}
	return st.Size()
}
