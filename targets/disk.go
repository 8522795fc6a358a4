package targets

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/diskfs/go-diskfs"
	diskfile "github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/rootpath"
	"github.com/fgimg/fgimg/stages"
)

// Disk layout: a GPT disk with the EFI system partition (FAT32) first and
// the root file system (ext4) second, filling the rest. Partitions start
// and end on MiB boundaries; the disk's last MiB holds the backup GPT.
const (
	diskMiB = int64(1) << 20
	diskGiB = int64(1) << 30

	diskSector = 512
	diskAlign  = diskMiB

	// espMinSize is the smallest EFI system partition: go-diskfs gives
	// FAT32 above 260 MiB 4 KiB clusters, and FAT32 needs at least
	// 65525 of them.
	espMinSize = 300 * diskMiB

	ext4BlockSize  = 4096
	ext4InodeSize  = 256
	ext4InodeRatio = 16384 // bytes per inode

	// A disk of the default size has room for its files plus 30% of
	// them, and at least 512 MiB, free.
	headroomPercent = 30
	headroomMin     = 512 * diskMiB
)

// Boot modes of a disk (Spec.Boot).
const (
	BootBIOS   = "bios"   // SeaBIOS and other PC BIOSes: syslinux
	BootUEFI   = "uefi"   // OVMF and other UEFI firmware: systemd-boot
	BootHybrid = "hybrid" // both; the default
	BootNone   = "none"   // no boot loader: the partitions only
)

// DiskInfo describes a disk BuildDisk wrote.
type DiskInfo struct {
	Size     int64  // bytes, a multiple of 1 MiB
	DiskGUID string // the GPT disk GUID
	ESP      DiskPartition
	Root     DiskPartition
	Boot     string // bios | uefi | hybrid | none
	Kernel   string // the version of the kernel on the ESP, such as "6.1.0-18-amd64"; empty when none
	CmdLine  string // the kernel command line the boot loaders pass
}

// DiskPartition is one partition of a disk BuildDisk wrote.
type DiskPartition struct {
	Number   int    // 1 for the ESP, 2 for the root file system
	Start    int64  // bytes from the disk's start
	Size     int64  // bytes
	PartUUID string // the GPT partition GUID (PARTUUID=)
	FSUUID   string // the file system's UUID (UUID=): "89AB-CDEF" for FAT
}

// BuildDisk writes the image in.Root as a bootable GPT disk to path,
// which must not exist: a sparse file of spec.Size bytes (when zero: the
// image's files plus headroom) with an EFI system partition (FAT32, made
// with go-diskfs, holding the kernel, the initrd and the boot loaders
// spec.Boot asks for) and an ext4 root file system made by mkfs.ext4 -d
// straight into the file. It changes nothing in in.Root, which must be
// the image adapted by AdaptDisk (its fstab names the file systems by the
// UUIDs written here). The same image gives the same bytes: every GUID,
// UUID, serial and hash seed derives from in.Image.ID (the image before
// adaptation) and every time from the image (or SourceDateEpoch).
// A size too small for the files is an error before anything is written.
func BuildDisk(ctx context.Context, in *Input, spec *DiskSpec, path string) (info DiskInfo, err error) {
	defer func() {
		if err != nil {
			info = DiskInfo{}
		}
	}()
	if in.Root == "" {
		return info, errors.New("a disk needs the image's root file system as a directory (Input.Root)")
	}
	want, boot, kernelArgs := spec.Size, spec.Boot, spec.KernelArgs
	if boot == "" {
		boot = BootHybrid
	}
	// They go into boot loader configuration files, one a line.
	if err := checkKernelArgs(kernelArgs); err != nil {
		return info, err
	}
	loaders, err := bootLoadersFor(boot, in.Image.Arch)
	if err != nil {
		return info, err
	}
	if err := checkDiskTools(loaders); err != nil {
		return info, err
	}
	name := in.Image.Name
	k, err := findBootKernel(in.Root)
	if err != nil {
		return info, fmt.Errorf("looking for the kernel of image %q: %w", name, err)
	}
	if loaders.any() {
		if k == nil {
			return info, fmt.Errorf("image %q has no kernel (no /boot/vmlinuz-*) to boot: install one (on Debian, linux-image-amd64), or set boot = \"none\"", name)
		}
		if k.initrd == "" {
			return info, fmt.Errorf("image %q has kernel %s but no initrd for it (/boot/initrd.img-%s): install initramfs-tools or dracut", name, k.version, k.version)
		}
	}
	var efiLoader string
	if loaders.uefi {
		if efiLoader, err = findSystemdBoot(in.Root, loaders.efiArch); err != nil {
			return info, err
		}
	}
	if err := ctx.Err(); err != nil {
		return info, err
	}

	tree, err := scanTree(ctx, in.Root)
	if err != nil {
		return info, fmt.Errorf("measuring image %q: %w", name, err)
	}
	var espContent int64
	if k != nil {
		espContent = k.size
	}
	lay, err := planDisk(tree, espContent, want)
	if err != nil {
		var small *sizeError
		if errors.As(err, &small) {
			small.image = name
		}
		return info, err
	}
	stamp := tree.newest
	if in.SourceDateEpoch != nil {
		stamp = in.SourceDateEpoch.Unix()
	}
	ids := diskIDsFor(string(in.Image.ID))
	info = DiskInfo{
		Size: lay.size, DiskGUID: ids.disk, Boot: boot,
		ESP:  DiskPartition{Number: 1, Start: lay.espStart, Size: lay.espSize, PartUUID: ids.espPart, FSUUID: ids.espVolume()},
		Root: DiskPartition{Number: 2, Start: lay.rootStart, Size: lay.rootSize, PartUUID: ids.rootPart, FSUUID: ids.rootFS},
	}
	info.CmdLine = strings.Join(append([]string{"root=PARTUUID=" + ids.rootPart, "rw"}, kernelArgs...), " ")
	if k != nil {
		info.Kernel = k.version
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return info, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	// Sparse: nothing is written but what the partitions hold.
	if err := f.Truncate(lay.size); err != nil {
		return info, err
	}
	// go-diskfs works on f; closing f (not d) ends it.
	d, err := diskfs.OpenBackend(diskfile.New(f, false), diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return info, err
	}
	if err := partitionDisk(d, &info, ids, loaders); err != nil {
		return info, fmt.Errorf("writing the partition table: %w", err)
	}
	// mkfs.ext4 and the ESP at once: they write apart in the file, and
	// mkfs.ext4 keeps only one core busy.
	esp := &espWriter{
		d: d, path: path, part: info.ESP, ids: ids, loaders: loaders, kernel: k,
		efiLoader: efiLoader, cmdline: info.CmdLine, title: spec.Title, stamp: stamp,
	}
	root := &ext4Writer{
		path: path, f: f, part: info.Root, ids: ids, tree: in.Root, inodes: lay.inodes,
		stamp: stamp, epoch: in.SourceDateEpoch,
	}
	both, cancel := context.WithCancel(ctx)
	defer cancel()
	espDone := make(chan error, 1)
	go func() {
		err := esp.write(both)
		if err != nil {
			cancel()
		}
		espDone <- err
	}()
	rootErr := root.write(both)
	if rootErr != nil {
		cancel()
	}
	espErr := <-espDone
	if err := ctx.Err(); err != nil {
		return info, err
	}
	// The first to fail cancels the other: report its error.
	if espErr != nil && (rootErr == nil || !errors.Is(espErr, context.Canceled)) {
		return info, fmt.Errorf("writing the EFI system partition: %w", espErr)
	}
	if rootErr != nil {
		return info, fmt.Errorf("writing the root file system of image %q: %w", name, rootErr)
	}
	return info, nil
}

// bootLoaders says which boot loaders a disk gets.
type bootLoaders struct {
	bios, uefi bool
	efiArch    string // systemd-boot's name for the architecture: x64, aa64
}

func (l bootLoaders) any() bool { return l.bios || l.uefi }

func bootLoadersFor(boot, arch string) (bootLoaders, error) {
	var l bootLoaders
	switch boot {
	case BootBIOS:
		l.bios = true
	case BootUEFI:
		l.uefi = true
	case BootHybrid:
		l.bios, l.uefi = true, true
	case BootNone:
	default:
		return l, fmt.Errorf("unknown boot mode %q: want bios, uefi, hybrid or none", boot)
	}
	switch arch {
	case "", "amd64", "x86_64":
		l.efiArch = "x64"
	case "arm64", "aarch64":
		if l.bios {
			return l, fmt.Errorf("boot = %q needs a PC BIOS, which %s machines do not have: use boot = \"uefi\"", boot, arch)
		}
		l.efiArch = "aa64"
	default:
		if l.any() {
			return l, fmt.Errorf("fgimg cannot make %s disks bootable yet: use boot = \"none\"", arch)
		}
	}
	return l, nil
}

// AdaptDisk is the adaptation every disk of the image whose last stage
// is image needs, whatever its boot settings: the fstab that mounts the
// file systems BuildDisk writes, by the UUIDs it gives them, and the ESP
// kernel hook (stages.DiskAdapt).
func AdaptDisk(image digest.Digest) []stages.Spec {
	ids := diskIDsFor(string(image))
	return []stages.Spec{&stages.DiskAdapt{RootUUID: ids.rootFS, ESPUUID: ids.espVolume()}}
}

// diskIDs are a disk's identifiers, all derived from the image's ID.
type diskIDs struct {
	disk, espPart, rootPart, rootFS, hashSeed string
	espSerial                                 uint32
}

func diskIDsFor(imageID string) diskIDs {
	sum := func(purpose string) [32]byte { return sha256.Sum256([]byte(imageID + "\x00" + purpose)) }
	guid := func(purpose string) string {
		b := sum(purpose)
		b[6] = b[6]&0x0f | 0x40 // version 4
		b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
		return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
	}
	s := sum("esp-serial")
	return diskIDs{
		disk:      guid("disk-guid"),
		espPart:   guid("esp-partuuid"),
		rootPart:  guid("root-partuuid"),
		rootFS:    guid("root-fs-uuid"),
		hashSeed:  guid("root-hash-seed"),
		espSerial: uint32(s[0])<<24 | uint32(s[1])<<16 | uint32(s[2])<<8 | uint32(s[3]),
	}
}

// espVolume is the FAT volume serial as blkid shows it, the UUID= of fstab.
func (ids diskIDs) espVolume() string {
	return fmt.Sprintf("%04X-%04X", ids.espSerial>>16, ids.espSerial&0xffff)
}

// treeStats measures an image's files.
type treeStats struct {
	inodes int64 // files, directories, links and nodes, hard links once
	blocks int64 // bytes in whole 4 KiB blocks: file data, directories, long symlinks
	newest int64 // the newest modification time, Unix seconds
}

// content is what the files need on ext4: their blocks and inodes.
func (t treeStats) content() int64 { return t.blocks + t.inodes*ext4InodeSize }

// scanWorkers is how many directories scanTree reads at once: the
// time goes to stat calls, which run in parallel well.
const scanWorkers = 4

// scanTree measures root as mkfs.ext4 will store it.
func scanTree(ctx context.Context, root string) (treeStats, error) {
	// Not the root directory's time: mkfs.ext4 does not copy it, and an
	// overlay's root is as new as the overlay.
	s := &treeScan{ctx: ctx, sem: make(chan struct{}, scanWorkers), seen: map[[2]uint64]bool{}}
	s.wg.Add(1)
	s.dir(root)
	s.wg.Wait()
	s.total.blocks += ext4BlockSize // lost+found
	s.total.inodes += 11            // reserved inodes (the root is one) and lost+found
	return s.total, s.err
}

type treeScan struct {
	ctx context.Context
	sem chan struct{} // a slot for each directory read in a goroutine of its own
	wg  sync.WaitGroup

	mu    sync.Mutex
	total treeStats
	seen  map[[2]uint64]bool // device and inode of files with hard links
	err   error
}

func (s *treeScan) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
}

// dir measures the directory path and what it holds, handing
// subdirectories to other goroutines while there are free slots.
func (s *treeScan) dir(path string) {
	defer s.wg.Done()
	if err := s.ctx.Err(); err != nil {
		s.fail(err)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		s.fail(err)
		return
	}
	names, err := f.Readdirnames(-1)
	if err != nil {
		f.Close()
		s.fail(err)
		return
	}
	var t treeStats
	var subdirs []string
	entries := int64(24) // "." and ".."
	fd := int(f.Fd())
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			f.Close()
			s.fail(&os.PathError{Op: "lstat", Path: filepath.Join(path, name), Err: err})
			return
		}
		// A directory entry: 8 bytes and the name, in 4-byte steps.
		entries += 8 + (int64(len(name))+3)&^3
		t.newest = max(t.newest, st.Mtim.Sec)
		kind := st.Mode & unix.S_IFMT
		if kind != unix.S_IFDIR && st.Nlink > 1 {
			id := [2]uint64{st.Dev, st.Ino}
			s.mu.Lock()
			dup := s.seen[id]
			s.seen[id] = true
			s.mu.Unlock()
			if dup {
				continue
			}
		}
		t.inodes++
		switch kind {
		case unix.S_IFREG:
			t.blocks += diskRoundUp(st.Size, ext4BlockSize)
			if st.Size > 4*128*diskMiB {
				// Extents map at most 128 MiB each; beyond four, index blocks.
				t.blocks += ext4BlockSize
			}
		case unix.S_IFLNK:
			if st.Size >= 60 { // shorter targets live in the inode
				t.blocks += ext4BlockSize
			}
		case unix.S_IFDIR:
			subdirs = append(subdirs, name)
		}
	}
	f.Close()
	if entries <= ext4BlockSize-12 {
		t.blocks += ext4BlockSize
	} else {
		// Hashed directories: leaves about three quarters full, and
		// index blocks.
		t.blocks += diskRoundUp(entries*4/3, ext4BlockSize) + ext4BlockSize
	}
	s.mu.Lock()
	s.total.inodes += t.inodes
	s.total.blocks += t.blocks
	s.total.newest = max(s.total.newest, t.newest)
	s.mu.Unlock()
	for _, name := range subdirs {
		p := filepath.Join(path, name)
		s.wg.Add(1)
		select {
		case s.sem <- struct{}{}:
			go func() {
				s.dir(p)
				<-s.sem
			}()
		default:
			s.dir(p)
		}
	}
}

// diskLayout places the partitions.
type diskLayout struct {
	size                int64
	espStart, espSize   int64
	rootStart, rootSize int64
	inodes              int64 // mkfs.ext4 -N, or 0 for its default ratio
}

// sizeError is a disk size too small for the image's files.
type sizeError struct {
	image      string
	size, need int64 // the size asked for, the files' need
	esp        int64 // the EFI system partition's size
	least      int64 // a size that fits
}

func (e *sizeError) Error() string {
	return fmt.Sprintf("size %s is too small for image %q: its files need %s beside the %s EFI system partition; use at least %s",
		formatDiskSize(e.size, false), e.image, formatDiskSize(e.need, true), formatDiskSize(e.esp, true), formatDiskSize(e.least, true))
}

// planDisk lays out a disk for tree: of size want, or when it is zero of
// the content plus headroom. kernel is what the ESP must hold once.
func planDisk(tree treeStats, kernel, want int64) (diskLayout, error) {
	var l diskLayout
	// Room for the kernel and initrd twice (an update beside the old
	// ones) and the boot loaders.
	l.espSize = max(espMinSize, diskRoundUp(2*kernel+64*diskMiB, diskAlign))
	l.espStart = diskAlign
	l.rootStart = l.espStart + l.espSize
	fixed := l.rootStart + diskAlign // the ESP, and the GPT at each end

	content := tree.content()
	// The files with 2% slack for what the estimate misses (xattr blocks,
	// fragmented extents).
	needed := content + content/50 + 16*diskMiB
	minRoot := ext4SizeFor(needed, tree.inodes)
	if want == 0 {
		free := max(content*headroomPercent/100, headroomMin)
		l.size = diskRoundUp(fixed+ext4SizeFor(content+free, tree.inodes), diskAlign)
	} else {
		l.size = diskRoundUp(want, diskAlign)
		if l.size-fixed < minRoot {
			least := fixed + minRoot
			unit := 64 * diskMiB
			if least > diskGiB {
				unit = diskGiB
			}
			return l, &sizeError{size: want, need: content, esp: l.espSize, least: diskRoundUp(least, unit)}
		}
	}
	l.rootSize = l.size - fixed
	l.rootSize -= l.rootSize % ext4BlockSize
	// mkfs.ext4 gives one inode per 16 KiB: force more when the files
	// would fill more than two thirds of them.
	if byRatio := l.rootSize / ext4InodeRatio; tree.inodes*3/2 > byRatio {
		l.inodes = tree.inodes * 3 / 2
	}
	return l, nil
}

// ext4SizeFor returns the size of an ext4 file system that holds use
// bytes of blocks and inode table entries for inodes files besides its
// own metadata: the journal, the inode tables and group metadata.
func ext4SizeFor(use, inodes int64) int64 {
	size := use
	for range 8 { // the overhead grows with the size; this converges fast
		next := use + ext4Overhead(size, inodes)
		if next <= size {
			break
		}
		size = next
	}
	return diskRoundUp(size, diskMiB)
}

// ext4Overhead estimates the metadata of an ext4 file system of size
// bytes made by mkfs.ext4 with fgimg's settings.
func ext4Overhead(size, inodes int64) int64 {
	blocks := size / ext4BlockSize
	groups := (blocks + 32767) / 32768
	itable := max(size/ext4InodeRatio, inodes*3/2) * ext4InodeSize
	// Superblock and group descriptor backups (sparse_super: groups 0, 1
	// and powers of 3, 5 and 7), each with the descriptor blocks reserved
	// for growing the file system 1024 times (resize_inode).
	gdt := (groups*64 + ext4BlockSize - 1) / ext4BlockSize
	maxGroups := (min(blocks*1024, 1<<32) + 32767) / 32768
	rsv := min(max((maxGroups*64+ext4BlockSize-1)/ext4BlockSize-gdt, 0), 1024)
	backups := int64(1)
	if groups > 1 {
		backups++
	}
	for _, base := range []int64{3, 5, 7} {
		for g := base; g < groups; g *= base {
			backups++
		}
	}
	meta := backups*(1+gdt+rsv) + groups*2 // and block and inode bitmaps
	return itable + journalBlocks(blocks)*ext4BlockSize + meta*ext4BlockSize
}

// journalBlocks is mke2fs's default journal size (ext2fs_default_journal_size).
func journalBlocks(blocks int64) int64 {
	switch {
	case blocks < 2048:
		return 0
	case blocks < 32768:
		return 1024
	case blocks < 256*1024:
		return 4096
	case blocks < 512*1024:
		return 8192
	case blocks < 4096*1024:
		return 16384
	case blocks < 8192*1024:
		return 32768
	case blocks < 16384*1024:
		return 65536
	case blocks < 32768*1024:
		return 131072
	}
	return 262144
}

func diskRoundUp(n, unit int64) int64 { return (n + unit - 1) / unit * unit }

// formatDiskSize writes n bytes in binary units the way sizes are written in
// templates: "1GiB", "1.4GiB", "300MiB". up rounds a fraction up rather
// than to the nearest tenth.
func formatDiskSize(n int64, up bool) string {
	units := []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", diskGiB}, {"MiB", diskMiB}, {"KiB", 1 << 10}}
	for _, u := range units {
		if n < u.size {
			continue
		}
		if n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.name)
		}
		v := float64(n) / float64(u.size) * 10
		if up {
			v = math.Ceil(v)
		} else {
			v = math.Round(v)
		}
		return strings.TrimSuffix(fmt.Sprintf("%.1f", v/10), ".0") + u.name
	}
	return fmt.Sprintf("%dB", n)
}

// partitionDisk writes the GPT with go-diskfs and, for BIOS boot,
// syslinux's GPT-aware MBR boot code.
func partitionDisk(d *disk.Disk, info *DiskInfo, ids diskIDs, loaders bootLoaders) error {
	rootType := gpt.LinuxFilesystem
	switch loaders.efiArch {
	case "x64":
		rootType = gpt.LinuxRootX86_64
	case "aa64":
		rootType = gpt.LinuxRootArm64
	}
	var espAttrs uint64
	if loaders.bios {
		espAttrs = 1 << 2 // legacy BIOS bootable: gptmbr.bin boots this one
	}
	part := func(p DiskPartition, typ gpt.Type, name string, attrs uint64) *gpt.Partition {
		return &gpt.Partition{
			Index: p.Number, Start: uint64(p.Start / diskSector), End: uint64((p.Start+p.Size)/diskSector - 1),
			Size: uint64(p.Size), Type: typ, Name: name, GUID: p.PartUUID, Attributes: attrs,
		}
	}
	table := &gpt.Table{
		LogicalSectorSize: diskSector, PhysicalSectorSize: diskSector, ProtectiveMBR: true, GUID: ids.disk,
		Partitions: []*gpt.Partition{
			part(info.ESP, gpt.EFISystemPartition, "EFI System Partition", espAttrs),
			part(info.Root, rootType, "root", 0),
		},
	}
	if err := d.Partition(table); err != nil {
		return err
	}
	if loaders.bios {
		code, err := os.ReadFile(gptMBR)
		if err != nil {
			return fmt.Errorf("reading syslinux's MBR boot code: %w", err)
		}
		if len(code) > 440 {
			code = code[:440] // the partition entries follow
		}
		f, err := d.Backend.Writable()
		if err != nil {
			return err
		}
		if _, err := f.WriteAt(code, 0); err != nil {
			return err
		}
	}
	return nil
}

// bootKernel is the kernel and initrd a disk boots.
type bootKernel struct {
	version string
	vmlinuz string // host paths inside the image's root
	initrd  string // empty when the image has none
	size    int64  // both files' sizes
}

// findBootKernel finds the image's newest /boot/vmlinuz-VERSION and its
// /boot/initrd.img-VERSION (initramfs-tools, Debian's dracut) or
// /boot/initramfs-VERSION.img (dracut elsewhere). It returns nil when
// there is no kernel.
func findBootKernel(root string) (*bootKernel, error) {
	kernels, err := stages.BootKernels(root)
	if err != nil {
		return nil, err
	}
	var k *bootKernel
	for _, c := range kernels {
		if k == nil || compareKernelVersions(c.Version, k.version) > 0 {
			k = &bootKernel{version: c.Version, vmlinuz: c.Path}
		}
	}
	if k == nil {
		return nil, nil
	}
	st, err := os.Stat(k.vmlinuz)
	if err != nil {
		return nil, err
	}
	k.size = st.Size()
	for _, name := range []string{"initrd.img-" + k.version, "initramfs-" + k.version + ".img"} {
		p, err := diskResolve(root, "/boot/"+name)
		if err != nil {
			continue
		}
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			k.initrd = p
			k.size += st.Size()
			break
		}
	}
	return k, nil
}

// diskResolve resolves the absolute path p inside the image at root,
// following symbolic links as the image itself would, never out of it.
// The result need not exist.
func diskResolve(root, p string) (string, error) {
	return rootpath.Join(root, p, rootpath.InRoot)
}

// compareKernelVersions orders kernel versions: runs of digits by value, the
// rest byte by byte, so 6.1.0-18 is newer than 6.1.0-9.
func compareKernelVersions(a, b string) int {
	digit := func(c byte) bool { return c >= '0' && c <= '9' }
	for a != "" && b != "" {
		if digit(a[0]) && digit(b[0]) {
			i, j := 0, 0
			for i < len(a) && digit(a[i]) {
				i++
			}
			for j < len(b) && digit(b[j]) {
				j++
			}
			na, nb := strings.TrimLeft(a[:i], "0"), strings.TrimLeft(b[:j], "0")
			if len(na) != len(nb) {
				return compareInts(len(na), len(nb))
			}
			if c := strings.Compare(na, nb); c != 0 {
				return c
			}
			a, b = a[i:], b[j:]
			continue
		}
		if a[0] != b[0] {
			return compareInts(int(a[0]), int(b[0]))
		}
		a, b = a[1:], b[1:]
	}
	return compareInts(len(a), len(b))
}

func compareInts(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
