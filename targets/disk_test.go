package targets

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/hosttool"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/stages"
)

const (
	testKernel  = "6.1.0-18-amd64"
	testKernel2 = "6.1.0-9-amd64" // older: 9 < 18 as numbers, not as text
)

// needDiskTools skips the test when the host lacks what a disk needs.
func needDiskTools(t testing.TB, tools ...string) {
	t.Helper()
	testkit.Need(t, append([]string{"mkfs.ext4", "e2fsck", "debugfs", "syslinux", "mdir", "mtype", "mcopy", gptMBR, hosttool.SystemdBoot}, tools...)...)
}

// diskTree makes a busybox root file system with two fake kernels, the
// newer one's initrd and an fstab with one entry of its own, adapted to
// a disk of diskInput's image.
func diskTree(t testing.TB) string {
	t.Helper()
	root := t.TempDir()
	testkit.BusyboxRootfs(t, root)
	write := func(rel, body string) { t.Helper(); writeIn(t, root, rel, body) }
	write("boot/vmlinuz-"+testKernel, "kernel "+testKernel+"\n"+strings.Repeat("k", 3<<20))
	write("boot/initrd.img-"+testKernel, "initrd "+testKernel+"\n"+strings.Repeat("i", 5<<20))
	write("boot/vmlinuz-"+testKernel2, "kernel "+testKernel2+"\n")
	write("boot/initrd.img-"+testKernel2, "initrd "+testKernel2+"\n")
	write("etc/fstab", "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n/dev/sda1 / ext4 defaults 0 1\ntmpfs /scratch tmpfs size=1G 0 0\n")
	testkit.SetTimes(t, root, testkit.Epoch)
	adaptDisk(t, diskInput(root))
	return root
}

// adaptDisk adapts the image at in.Root to a disk, as the engine does
// before a disk's writer runs (the kind's adaptation stages).
func adaptDisk(t testing.TB, in *Input) {
	t.Helper()
	for _, s := range AdaptDisk(in.Image.ID) {
		if _, err := stages.Run(context.Background(), s, &stages.Env{Root: in.Root}); err != nil {
			t.Fatal(err)
		}
	}
}

// espHookPaths are where the disk adaptation puts the ESP kernel hook.
var espHookPaths = []string{
	"/etc/kernel/postinst.d/zz-fgimg-esp",
	"/etc/kernel/postrm.d/zz-fgimg-esp",
	"/etc/initramfs/post-update.d/zz-fgimg-esp",
}

// writeIn writes the file rel in the tree at root, making its directories.
func writeIn(t testing.TB, root, rel, body string) {
	t.Helper()
	testkit.WriteFile(t, root, rel, body)
}

func diskInput(root string) *Input {
	epoch := testkit.Epoch.Add(24 * time.Hour)
	return &Input{
		Image: ImageInfo{Name: "base", ID: digest.FromString("image base"), Arch: "amd64"},
		Root:  root, SourceDateEpoch: &epoch,
	}
}

// run runs a host tool and returns its output.
func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	p, err := hosttool.Find(name)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(p, args...)
	cmd.Env = hosttool.CleanEnv("MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRawDiskLayout(t *testing.T) {
	needDiskTools(t)
	for _, boot := range []string{BootHybrid, BootBIOS, BootUEFI, BootNone} {
		t.Run(boot, func(t *testing.T) {
			root := diskTree(t)
			in := diskInput(root)
			spec := &RawSpec{DiskSpec{Boot: boot, KernelArgs: []string{"console=ttyS0,115200", "quiet"}}}
			dir := t.TempDir()
			arts, err := Raw{}.Write(context.Background(), in, spec, dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(arts) != 1 || arts[0].Path != "disk.raw" || arts[0].MediaType != MediaTypeRawDisk {
				t.Fatalf("artifacts = %+v", arts)
			}
			img := filepath.Join(dir, "disk.raw")
			info := diskInfoOf(t, in, &spec.DiskSpec)
			checkGPT(t, img, info, boot)
			checkRootFS(t, img, info, in)
			checkESP(t, img, info, boot, spec.KernelArgs, root)
		})
	}
}

// diskInfoOf is the DiskInfo BuildDisk reports for in and spec, from a
// second build into a throwaway file.
func diskInfoOf(t *testing.T, in *Input, spec *DiskSpec) DiskInfo {
	t.Helper()
	info, err := BuildDisk(context.Background(), in, spec, filepath.Join(t.TempDir(), "again.raw"))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func checkGPT(t *testing.T, img string, info DiskInfo, boot string) {
	t.Helper()
	st, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != info.Size || st.Size()%diskMiB != 0 {
		t.Errorf("disk is %d bytes, info says %d; want a MiB multiple", st.Size(), info.Size)
	}
	d, err := diskfs.Open(img, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	pt, err := d.GetPartitionTable()
	if err != nil {
		t.Fatal(err)
	}
	table, ok := pt.(*gpt.Table)
	if !ok {
		t.Fatalf("partition table is %T, want GPT", pt)
	}
	if !strings.EqualFold(table.GUID, info.DiskGUID) {
		t.Errorf("disk GUID %s, want %s", table.GUID, info.DiskGUID)
	}
	var parts []*gpt.Partition
	for _, p := range table.Partitions {
		if p.Type != gpt.Unused {
			parts = append(parts, p)
		}
	}
	if len(parts) != 2 {
		t.Fatalf("%d partitions, want 2", len(parts))
	}
	esp, root := parts[0], parts[1]
	if esp.Type != gpt.EFISystemPartition || !strings.EqualFold(esp.GUID, info.ESP.PartUUID) {
		t.Errorf("partition 1: type %s GUID %s; want the ESP, %s", esp.Type, esp.GUID, info.ESP.PartUUID)
	}
	if root.Type != gpt.LinuxRootX86_64 || !strings.EqualFold(root.GUID, info.Root.PartUUID) {
		t.Errorf("partition 2: type %s GUID %s; want Linux root (x86-64), %s", root.Type, root.GUID, info.Root.PartUUID)
	}
	if int64(esp.Start)*512 != info.ESP.Start || int64(root.Start)*512 != info.Root.Start ||
		int64(root.End+1)*512 != info.Root.Start+info.Root.Size {
		t.Errorf("partitions at %d..%d and %d..%d, info %+v", esp.Start, esp.End, root.Start, root.End, info)
	}
	if info.ESP.Start%diskMiB != 0 || info.Root.Start%diskMiB != 0 {
		t.Errorf("partitions not MiB-aligned: %+v", info)
	}
	legacy := esp.Attributes&(1<<2) != 0
	bios := boot == BootBIOS || boot == BootHybrid
	if legacy != bios {
		t.Errorf("ESP legacy BIOS bootable = %v, want %v", legacy, bios)
	}
	mbr := make([]byte, 512)
	f, _ := os.Open(img)
	defer f.Close()
	if _, err := f.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	code, _ := os.ReadFile(gptMBR)
	if got := bytes.Equal(mbr[:440], code[:440]); got != bios {
		t.Errorf("syslinux gptmbr.bin in the MBR: %v, want %v", got, bios)
	}
	if mbr[510] != 0x55 || mbr[511] != 0xaa || mbr[446+4] != 0xee {
		t.Errorf("no protective MBR")
	}
}

func checkRootFS(t *testing.T, img string, info DiskInfo, in *Input) {
	t.Helper()
	dev := fmt.Sprintf("%s?offset=%d", img, info.Root.Start)
	runTool(t, "e2fsck", "-fn", dev)

	fstab := runTool(t, "debugfs", "-R", "cat /etc/fstab", dev)
	for _, want := range []string{
		"UUID=" + info.Root.FSUUID + "\t/\text4\terrors=remount-ro\t0\t1\n",
		"UUID=" + info.ESP.FSUUID + "\t/boot/efi\tvfat\tumask=0077\t0\t2\n",
		"tmpfs /scratch tmpfs size=1G 0 0\n",
	} {
		if !strings.Contains(fstab, want) {
			t.Errorf("/etc/fstab lacks %q:\n%s", want, fstab)
		}
	}
	if strings.Contains(fstab, "/dev/sda1") {
		t.Errorf("/etc/fstab keeps the image's own root entry:\n%s", fstab)
	}
	probe := runTool(t, "blkid", "-p", "-o", "export", "-O", strconv.FormatInt(info.Root.Start, 10), img)
	if !strings.Contains(probe, "UUID="+info.Root.FSUUID+"\n") || !strings.Contains(probe, "TYPE=ext4") {
		t.Errorf("blkid of the root partition:\n%s\nwant ext4 UUID %s", probe, info.Root.FSUUID)
	}
	super := runTool(t, "dumpe2fs", "-h", dev)
	ids := diskIDsFor(string(in.Image.ID))
	if !strings.Contains(super, "Directory Hash Seed:      "+ids.hashSeed+"\n") {
		t.Errorf("superblock lacks hash seed %s:\n%s", ids.hashSeed, super)
	}
	// The features Debian 12's mkfs.ext4 gives, metadata checksums
	// included (fgimg adds them after populating the file system).
	m := regexp.MustCompile(`(?m)^Filesystem features:\s+(.*)$`).FindStringSubmatch(super)
	if m == nil {
		t.Fatalf("dumpe2fs shows no features:\n%s", super)
	}
	have := strings.Fields(m[1])
	for _, f := range []string{"has_journal", "ext_attr", "dir_index", "filetype", "extent", "64bit", "flex_bg", "huge_file", "dir_nlink", "extra_isize", "metadata_csum"} {
		if !slices.Contains(have, f) {
			t.Errorf("root file system lacks feature %s: %s", f, m[1])
		}
	}
	// The hook that keeps the ESP's kernel current is there, executable.
	for _, p := range espHookPaths {
		if st := runTool(t, "debugfs", "-R", "stat "+p, dev); !strings.Contains(st, "Mode:  0755") {
			t.Errorf("%s is not an executable file:\n%s", p, st)
		}
	}
	// Every inode's times follow its modification time, clamped to
	// SOURCE_DATE_EPOCH: nothing from the build host's clock.
	epoch := in.SourceDateEpoch.Unix()
	for _, p := range []string{"/bin/busybox", "/etc/fstab", "/boot/efi", "/etc", "/", "/lost+found", espHookPaths[0], "/etc/initramfs"} {
		st := runTool(t, "debugfs", "-R", "stat "+p, dev)
		times := regexp.MustCompile(`(?m)^ ?([acmr]time|crtime): (0x[0-9a-f]+):`).FindAllStringSubmatch(st, -1)
		if len(times) != 4 {
			t.Fatalf("stat %s: %d times\n%s", p, len(times), st)
		}
		var mtime string
		for _, m := range times {
			if m[1] == "mtime" {
				mtime = m[2]
			}
		}
		for _, m := range times {
			v, _ := strconv.ParseInt(m[2][2:], 16, 64)
			if v > epoch || (m[1] != "crtime" && m[2] != mtime) {
				t.Errorf("%s: %s %s, mtime %s, epoch %#x", p, m[1], m[2], mtime, epoch)
			}
		}
	}
}

func checkESP(t *testing.T, img string, info DiskInfo, boot string, args []string, root string) {
	t.Helper()
	fat := fmt.Sprintf("%s@@%d", img, info.ESP.Start)
	listing := runTool(t, "mdir", "-/", "-a", "-b", "-i", fat, "::/")
	has := func(p string) bool {
		return regexp.MustCompile(`(?mi)^::` + regexp.QuoteMeta(p) + `/?$`).MatchString(listing)
	}
	bios := boot == BootBIOS || boot == BootHybrid
	uefi := boot == BootUEFI || boot == BootHybrid
	for p, want := range map[string]bool{
		"/vmlinuz": true, "/initrd.img": true,
		"/EFI/BOOT/BOOTX64.EFI": uefi, "/loader/loader.conf": uefi, "/loader/entries/fgimg.conf": uefi,
		"/syslinux/syslinux.cfg": bios, "/syslinux/ldlinux.sys": bios, "/syslinux/ldlinux.c32": bios,
	} {
		if has(p) != want {
			t.Errorf("ESP has %s: %v, want %v; listing:\n%s", p, has(p), want, listing)
		}
	}
	// The newest kernel and its initrd, byte for byte.
	for esp, src := range map[string]string{"/vmlinuz": "boot/vmlinuz-" + testKernel, "/initrd.img": "boot/initrd.img-" + testKernel} {
		got := runTool(t, "mtype", "-i", fat, "::"+esp)
		want, _ := os.ReadFile(filepath.Join(root, src))
		if got != string(want) {
			t.Errorf("ESP %s is not %s (starts %.30q)", esp, src, got)
		}
	}
	cmdline := "root=PARTUUID=" + info.Root.PartUUID + " rw " + strings.Join(args, " ")
	if info.CmdLine != cmdline {
		t.Errorf("command line %q, want %q", info.CmdLine, cmdline)
	}
	if uefi {
		entry := runTool(t, "mtype", "-i", fat, "::/loader/entries/fgimg.conf")
		for _, want := range []string{"linux /vmlinuz\n", "initrd /initrd.img\n", "options " + cmdline + "\n"} {
			if !strings.Contains(entry, want) {
				t.Errorf("loader entry lacks %q:\n%s", want, entry)
			}
		}
		efi := runTool(t, "mtype", "-i", fat, "::/EFI/BOOT/BOOTX64.EFI")
		host, _ := os.ReadFile(fmt.Sprintf(systemdBootPath, "x64"))
		if efi != string(host) {
			t.Errorf("BOOTX64.EFI is not systemd-boot")
		}
	}
	if bios {
		cfg := runTool(t, "mtype", "-i", fat, "::/syslinux/syslinux.cfg")
		for _, want := range []string{"LINUX /vmlinuz\n", "INITRD /initrd.img\n", "APPEND " + cmdline + "\n"} {
			if !strings.Contains(cfg, want) {
				t.Errorf("syslinux.cfg lacks %q:\n%s", want, cfg)
			}
		}
	}
	// The boot sector: the volume serial from the image, the partition's
	// start as hidden sectors (syslinux reads with it), a backup copy.
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bs := make([]byte, 512)
	backup := make([]byte, 512)
	f.ReadAt(bs, info.ESP.Start)
	f.ReadAt(backup, info.ESP.Start+6*512)
	if !bytes.Equal(bs, backup) {
		t.Errorf("backup boot sector differs")
	}
	if got := binary.LittleEndian.Uint32(bs[0x1c:]); int64(got) != info.ESP.Start/512 {
		t.Errorf("hidden sectors %d, want %d", got, info.ESP.Start/512)
	}
	probe := runTool(t, "blkid", "-p", "-o", "export", "-O", strconv.FormatInt(info.ESP.Start, 10), img)
	if !strings.Contains(probe, "UUID="+info.ESP.FSUUID+"\n") || !strings.Contains(probe, "TYPE=vfat") {
		t.Errorf("blkid of the ESP:\n%s\nwant vfat UUID %s", probe, info.ESP.FSUUID)
	}
	// Every entry dated SOURCE_DATE_EPOCH (FAT keeps local time; mtools
	// shows it as is).
	day := time.Unix(diskInput("").SourceDateEpoch.Unix(), 0).UTC().Format("2006-01-02")
	dirs := []string{"::/"}
	if uefi {
		dirs = append(dirs, "::/EFI", "::/EFI/BOOT", "::/loader/entries")
	}
	if bios {
		dirs = append(dirs, "::/syslinux")
	}
	for _, dir := range dirs {
		out := runTool(t, "mdir", "-a", "-i", fat, dir)
		for _, line := range strings.Split(out, "\n") {
			if m := regexp.MustCompile(`\d{4}-\d\d-\d\d`).FindString(line); m != "" && m != day {
				t.Errorf("%s: entry dated %s, want %s: %s", dir, m, day, line)
			}
		}
	}
	if _, err := hosttool.Find("fsck.fat"); err == nil || testkit.ToolsRequired() {
		esp := filepath.Join(t.TempDir(), "esp.img")
		runTool(t, "dd", "if="+img, "of="+esp, "bs=1M", fmt.Sprintf("skip=%d", info.ESP.Start/diskMiB),
			fmt.Sprintf("count=%d", info.ESP.Size/diskMiB), "conv=sparse", "status=none")
		runTool(t, "fsck.fat", "-n", esp)
	}
}

// TestRawDiskReproducible builds the same image twice from two copies of
// its tree, made at different times: the disks are the same bytes.
func TestRawDiskReproducible(t *testing.T) {
	needDiskTools(t)
	spec := &DiskSpec{Size: 400 * diskMiB, KernelArgs: []string{"console=ttyS0"}}
	var sums [2][32]byte
	for i := range sums {
		if i == 1 {
			time.Sleep(1100 * time.Millisecond) // other change times in the tree
		}
		in := diskInput(diskTree(t))
		if i == 1 {
			in.SourceDateEpoch = nil // the newest file's time instead, the same for both trees
		}
		p := filepath.Join(t.TempDir(), "disk.raw")
		if _, err := BuildDisk(context.Background(), in, spec, p); err != nil {
			t.Fatal(err)
		}
		sums[i] = fileSum(t, p)
	}
	// The second build has no SOURCE_DATE_EPOCH: different times, other
	// bytes. Build it once more to compare.
	in := diskInput(diskTree(t))
	in.SourceDateEpoch = nil
	// The engine's scratch overlay has a new root directory.
	if err := os.Chtimes(in.Root, time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "disk.raw")
	if _, err := BuildDisk(context.Background(), in, spec, p); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, p) != sums[1] {
		t.Errorf("two builds without SOURCE_DATE_EPOCH differ")
	}
	in = diskInput(diskTree(t))
	p = filepath.Join(t.TempDir(), "disk.raw")
	if _, err := BuildDisk(context.Background(), in, spec, p); err != nil {
		t.Fatal(err)
	}
	if fileSum(t, p) != sums[0] {
		t.Errorf("two builds with SOURCE_DATE_EPOCH differ")
	}
	if sums[0] == sums[1] {
		t.Errorf("SOURCE_DATE_EPOCH changes nothing")
	}
	// Another image: other identifiers.
	a, b := diskIDsFor(string(diskInput("").Image.ID)), diskIDsFor("sha256:other")
	if a.disk == b.disk || a.rootFS == b.rootFS || a.rootPart == b.rootPart || a.espPart == b.espPart || a.espSerial == b.espSerial || a.hashSeed == b.hashSeed {
		t.Errorf("two images share identifiers: %+v, %+v", a, b)
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

func TestRawDiskTooSmall(t *testing.T) {
	needDiskTools(t)
	root := diskTree(t)
	// 60 MiB of files besides busybox.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20)
	for i := range 4 {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprintf("srv-%d", i)), big[:15<<20], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	before, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
	in := diskInput(root)
	dir := t.TempDir()
	_, err := Raw{}.Write(context.Background(), in, &RawSpec{DiskSpec{Size: 320 * diskMiB}}, dir)
	re := regexp.MustCompile(`^raw target: size 320MiB is too small for image "base": its files need ([\d.]+)MiB beside the 300MiB EFI system partition; use at least (\d+)MiB$`)
	m := re.FindStringSubmatch(fmt.Sprint(err))
	if m == nil {
		t.Fatalf("error %v, want one matching %s", err, re)
	}
	if need, _ := strconv.ParseFloat(m[1], 64); need < 60 || need > 80 {
		t.Errorf("files need %g MiB, want about 70", need)
	}
	if _, err := os.Stat(filepath.Join(dir, "disk.raw")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("disk.raw written after all: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(root, "etc/fstab")); !bytes.Equal(after, before) {
		t.Errorf("/etc/fstab changed")
	}
	// The size the error asks for is enough, and so is the least size
	// the estimate accepts.
	least, _ := strconv.Atoi(m[2])
	tree, err := scanTree(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	lay, err := planDisk(tree, 8<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	exact := lay.rootStart + diskAlign + ext4SizeFor(tree.content()+tree.content()/50+16*diskMiB, tree.inodes)
	for _, size := range []int64{int64(least) * diskMiB, exact} {
		p := filepath.Join(t.TempDir(), "disk.raw")
		info, err := BuildDisk(context.Background(), diskInput(root), &DiskSpec{Size: size}, p)
		if err != nil {
			t.Fatalf("size %s: %v", formatDiskSize(size, false), err)
		}
		runTool(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", p, info.Root.Start))
	}
	if _, err := BuildDisk(context.Background(), diskInput(root), &DiskSpec{Size: exact - diskMiB}, filepath.Join(t.TempDir(), "disk.raw")); err == nil {
		t.Errorf("a MiB less than the least size is accepted")
	}
}

func TestSizeErrorMessage(t *testing.T) {
	tree := treeStats{inodes: 40000, blocks: 1350*diskMiB - 40000*ext4InodeSize}
	_, err := planDisk(tree, 60*diskMiB, diskGiB)
	var se *sizeError
	if !errors.As(err, &se) {
		t.Fatalf("error %v, want a sizeError", err)
	}
	se.image = "base"
	if got, want := se.Error(), `size 1GiB is too small for image "base": its files need 1.4GiB beside the 300MiB EFI system partition; use at least 2GiB`; got != want {
		t.Errorf("error\n%s\nwant\n%s", got, want)
	}
	// The default size leaves 30% of the content, at least 512 MiB, free.
	for _, content := range []int64{10 * diskMiB, 4 * diskGiB} {
		tree := treeStats{inodes: 1000, blocks: content}
		lay, err := planDisk(tree, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		free := lay.rootSize - ext4Overhead(lay.rootSize, lay.inodes) - tree.content()
		if want := max(tree.content()*3/10, 512*diskMiB); free < want || free > want+want/10+16*diskMiB {
			t.Errorf("content %s: %s free, want %s", formatDiskSize(content, false), formatDiskSize(free, false), formatDiskSize(want, false))
		}
		if lay.size%diskMiB != 0 {
			t.Errorf("size %d not in MiB", lay.size)
		}
	}
}

func TestFormatDiskSize(t *testing.T) {
	for n, want := range map[int64]string{
		diskGiB: "1GiB", 3 * diskGiB / 2: "1.5GiB", 300 * diskMiB: "300MiB", 1500: "1.5KiB", 12: "12B",
		diskGiB + 1: "1GiB",
	} {
		if got := formatDiskSize(n, false); got != want {
			t.Errorf("formatDiskSize(%d) = %s, want %s", n, got, want)
		}
	}
	if got := formatDiskSize(diskGiB+1, true); got != "1.1GiB" {
		t.Errorf("rounded up: %s", got)
	}
}

func TestRawDiskBootErrors(t *testing.T) {
	needDiskTools(t)
	noKernel := func() string {
		root := diskTree(t)
		os.RemoveAll(filepath.Join(root, "boot"))
		return root
	}
	noInitrd := func() string {
		root := diskTree(t)
		os.Remove(filepath.Join(root, "boot/initrd.img-"+testKernel))
		return root
	}
	for _, c := range []struct {
		boot string
		root func() string
		want string // "" for success
	}{
		{BootHybrid, noKernel, `image "base" has no kernel (no /boot/vmlinuz-*) to boot`},
		{BootUEFI, noKernel, `image "base" has no kernel`},
		{BootBIOS, noInitrd, `image "base" has kernel 6.1.0-18-amd64 but no initrd for it (/boot/initrd.img-6.1.0-18-amd64): install initramfs-tools or dracut`},
		{BootNone, noKernel, ""},
		{BootNone, noInitrd, ""},
		{"grub", noKernel, `unknown boot mode "grub"`},
		{"bios\nDEFAULT evil", noKernel, `unknown boot mode`},
	} {
		root := c.root()
		dir := t.TempDir()
		_, err := Raw{}.Write(context.Background(), diskInput(root), &RawSpec{DiskSpec{Boot: c.boot, Size: 400 * diskMiB}}, dir)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("boot %s: %v", c.boot, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("boot %s: error %v, want %q", c.boot, err, c.want)
		}
		if c.want == "" && err == nil {
			img := filepath.Join(dir, "disk.raw")
			info := diskInfoOf(t, diskInput(root), &DiskSpec{Boot: c.boot, Size: 400 * diskMiB})
			runTool(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=%d", img, info.Root.Start))
		}
	}
	_, err := Raw{}.Write(context.Background(), diskInput(diskTree(t)), &QCOW2Spec{DiskSpec: DiskSpec{}}, t.TempDir())
	if err == nil {
		t.Errorf("raw writer takes a qcow2 spec")
	}
	_, err = Raw{}.Write(context.Background(), diskInput(diskTree(t)), &RawSpec{DiskSpec{KernelArgs: []string{"quiet\nAPPEND init=/bin/sh"}}}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "control character") {
		t.Errorf("a kernel argument with a newline: %v", err)
	}
	in := diskInput(diskTree(t))
	in.Image.Arch = "arm64"
	_, err = Raw{}.Write(context.Background(), in, &RawSpec{DiskSpec{Boot: BootHybrid}}, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `use boot = "uefi"`) {
		t.Errorf("hybrid boot of an arm64 image: %v", err)
	}
}

// TestRawDiskManySmallFiles: a tree of more files than mkfs.ext4 gives a
// file system of its size inodes by default still fits.
func TestRawDiskManySmallFiles(t *testing.T) {
	needDiskTools(t)
	root := diskTree(t)
	for i := range 4000 {
		p := filepath.Join(root, fmt.Sprintf("var/lib/many/d%02d/f%04d", i/500, i))
		if i%500 == 0 {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "disk.raw")
	info, err := BuildDisk(context.Background(), diskInput(root), &DiskSpec{Boot: BootNone, Size: 360 * diskMiB}, p)
	if err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%s?offset=%d", p, info.Root.Start)
	runTool(t, "e2fsck", "-fn", dev)
	m := regexp.MustCompile(`Inode count:\s+(\d+)`).FindStringSubmatch(runTool(t, "dumpe2fs", "-h", dev))
	if m == nil {
		t.Fatal("dumpe2fs shows no inode count")
	}
	if n, _ := strconv.ParseInt(m[1], 10, 64); n < 4000*3/2 {
		t.Errorf("%d inodes, want room for 4000 files and half as many more", n)
	}
	// A directory of several blocks is hash-indexed, as the kernel
	// would index it, so that lookups in it do not scan every block.
	st := runTool(t, "debugfs", "-R", "stat /var/lib/many/d00", dev)
	f := regexp.MustCompile(`Flags: 0x([0-9a-f]+)`).FindStringSubmatch(st)
	if f == nil {
		t.Fatalf("debugfs shows no flags:\n%s", st)
	}
	if flags, _ := strconv.ParseUint(f[1], 16, 32); flags&0x1000 == 0 {
		t.Errorf("a directory of 500 files is not indexed (EXT4_INDEX_FL):\n%s", st)
	}
}

func TestCompareKernelVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"6.1.0-18-amd64", "6.1.0-9-amd64", 1},
		{"6.1.0-9-amd64", "6.1.0-18-amd64", -1},
		{"6.10.0", "6.9.12", 1},
		{"6.1.0-18-amd64", "6.1.0-18-amd64", 0},
		{"6.1.0-18-cloud-amd64", "6.1.0-18-amd64", 1},
	} {
		if got := compareKernelVersions(c.a, c.b); got != c.want {
			t.Errorf("compare(%s, %s) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
