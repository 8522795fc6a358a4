package targets

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"

	"github.com/fgimg/fgimg/internal/hosttool"
)

// Host files, in Debian's places (internal/hosttool names their packages).
const (
	gptMBR          = hosttool.GPTMBR
	systemdBootPath = hosttool.SystemdBootFmt
)

// checkDiskTools checks that the host has the tools a disk needs, and
// says which packages provide those it lacks.
func checkDiskTools(l bootLoaders) error {
	need := []string{"mkfs.ext4", "tune2fs", "e2fsck"}
	if l.bios {
		need = append(need, "syslinux", "mcopy")
	}
	var missing []string
	for _, tool := range need {
		if _, err := hosttool.Find(tool); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if l.bios {
		if err := hosttool.NeedFile(gptMBR); err != nil {
			missing = append(missing, err.Error())
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("writing a disk needs tools of the build host: %s", strings.Join(missing, "; "))
	}
	return nil
}

// findSystemdBoot returns systemd-boot's EFI program: the image's own
// when it has systemd-boot-efi, else the build host's.
func findSystemdBoot(root, efiArch string) (string, error) {
	p := fmt.Sprintf(systemdBootPath, efiArch)
	if in, err := diskResolve(root, p); err == nil {
		if st, err := os.Stat(in); err == nil && st.Mode().IsRegular() {
			return in, nil
		}
	}
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		return p, nil
	}
	return "", fmt.Errorf("UEFI boot needs systemd-boot, in the image or on the build host: %w", hosttool.Missing(p))
}

// espWriter fills the EFI system partition: a FAT32 file system made
// and filled with go-diskfs, with
//
//	/vmlinuz, /initrd.img                 the image's kernel and initrd
//	/EFI/BOOT/BOOTX64.EFI                 systemd-boot (UEFI)
//	/loader/loader.conf, /loader/entries/fgimg.conf
//	/syslinux/syslinux.cfg, ldlinux.*     syslinux (BIOS), installed by syslinux --install
type espWriter struct {
	d         *disk.Disk
	path      string // the disk file, for syslinux
	part      DiskPartition
	ids       diskIDs
	loaders   bootLoaders
	kernel    *bootKernel // nil when the image has none
	efiLoader string      // systemd-boot's program on the host
	cmdline   string
	title     string // the boot menu's name for the image
	stamp     int64  // every time on the file system, Unix seconds
}

func (w *espWriter) write(ctx context.Context) error {
	fsys, err := w.d.CreateFilesystem(disk.FilesystemSpec{
		Partition: w.part.Number, FSType: filesystem.TypeFat32, VolumeLabel: "EFI", Reproducible: true,
	})
	if err != nil {
		return fmt.Errorf("making the FAT32 file system: %w", err)
	}
	buf := make([]byte, 8<<20)
	put := func(name string, r io.Reader) error {
		if err := fsys.Mkdir(path.Dir(name)); err != nil {
			return fmt.Errorf("making %s: %w", path.Dir(name), err)
		}
		f, err := fsys.OpenFile(name, os.O_CREATE|os.O_RDWR)
		if err != nil {
			return fmt.Errorf("creating %s: %w", name, err)
		}
		// Large writes: go-diskfs allocates clusters and rewrites the
		// FAT once per write.
		if _, err := io.CopyBuffer(onlyWriter{f}, &ctxReader{ctx: ctx, r: r}, buf); err != nil {
			f.Close()
			return fmt.Errorf("writing %s: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
		return nil
	}
	putFile := func(name, src string) error {
		f, err := os.Open(src)
		if err != nil {
			return err
		}
		defer f.Close()
		return put(name, f)
	}
	putString := func(name, s string) error { return put(name, strings.NewReader(s)) }

	if k := w.kernel; k != nil {
		if err := putFile("/vmlinuz", k.vmlinuz); err != nil {
			return err
		}
		if k.initrd != "" {
			if err := putFile("/initrd.img", k.initrd); err != nil {
				return err
			}
		}
	}
	if w.loaders.uefi {
		if err := putFile("/EFI/BOOT/BOOT"+strings.ToUpper(w.loaders.efiArch)+".EFI", w.efiLoader); err != nil {
			return err
		}
		if err := putString("/loader/loader.conf", "default fgimg.conf\ntimeout 0\neditor no\n"); err != nil {
			return err
		}
		entry := fmt.Sprintf("title %s\nversion %s\nlinux /vmlinuz\ninitrd /initrd.img\noptions %s\n", w.title, w.kernel.version, w.cmdline)
		if err := putString("/loader/entries/fgimg.conf", entry); err != nil {
			return err
		}
	}
	if w.loaders.bios {
		cfg := fmt.Sprintf("# %s, kernel %s\nDEFAULT fgimg\nPROMPT 0\nTIMEOUT 0\n\nLABEL fgimg\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND %s\n",
			w.title, w.kernel.version, w.cmdline)
		if err := putString("/syslinux/syslinux.cfg", cfg); err != nil {
			return err
		}
		if err := w.installSyslinux(ctx); err != nil {
			return err
		}
	}
	return w.finish()
}

// onlyWriter hides a file's ReadFrom, so io.CopyBuffer uses the buffer.
type onlyWriter struct{ w io.Writer }

func (o onlyWriter) Write(p []byte) (int, error) { return o.w.Write(p) }

// installSyslinux runs syslinux's installer (its mtools variant, which
// works on the image file without mounting it): it writes ldlinux.sys
// and ldlinux.c32 to /syslinux and its boot sector to the ESP.
func (w *espWriter) installSyslinux(ctx context.Context) error {
	// The installer ends with sync(2), which waits for every dirty page
	// on the machine: seconds after a build.
	cmd, err := hosttool.Unsynced(ctx, "syslinux", "--install", "--offset", strconv.FormatInt(w.part.Start, 10), "--directory", "/syslinux", w.path)
	if err != nil {
		return err
	}
	cmd.Env = hosttool.CleanEnv("SOURCE_DATE_EPOCH="+strconv.FormatInt(max(w.stamp, fatEpoch), 10), "MTOOLS_SKIP_CHECK=1")
	var out hosttool.Tail
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := hosttool.Run(cmd); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("syslinux --install failed (%v): %s", err, out.String())
	}
	return nil
}

// FAT file systems count time from 1980.
var fatEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// FAT32 boot sector fields.
const (
	fatBytesPerSector = 0x0b
	fatSecPerCluster  = 0x0d
	fatReserved       = 0x0e
	fatCount          = 0x10
	fatHiddenSectors  = 0x1c
	fatSectorsPerFAT  = 0x24
	fatRootCluster    = 0x2c
	fatBackupBoot     = 0x32
	fatVolumeID       = 0x43
)

// finish makes the FAT file system reproducible and bootable where
// go-diskfs leaves it to us: the volume serial from the image's ID, the
// hidden sectors (the partition's start, which syslinux's boot sector
// adds to its reads), the backup boot sector equal to the boot sector,
// and every directory entry's times set to the stamp.
func (w *espWriter) finish() error {
	f, err := w.d.Backend.Writable()
	if err != nil {
		return err
	}
	bs := make([]byte, diskSector)
	if _, err := f.ReadAt(bs, w.part.Start); err != nil {
		return err
	}
	if binary.LittleEndian.Uint16(bs[fatBytesPerSector:]) != diskSector || bs[510] != 0x55 || bs[511] != 0xaa {
		return errors.New("the FAT32 boot sector is not as go-diskfs writes it")
	}
	binary.LittleEndian.PutUint32(bs[fatHiddenSectors:], uint32(w.part.Start/diskSector))
	binary.LittleEndian.PutUint32(bs[fatVolumeID:], w.ids.espSerial)
	if _, err := f.WriteAt(bs, w.part.Start); err != nil {
		return err
	}
	if backup := int64(binary.LittleEndian.Uint16(bs[fatBackupBoot:])); backup != 0 {
		if _, err := f.WriteAt(bs, w.part.Start+backup*diskSector); err != nil {
			return err
		}
	}
	date, clock := fatTime(w.stamp)
	if err := stampFAT(f, w.part.Start, bs, date, clock); err != nil {
		return err
	}
	return countFreeClusters(f, w.part.Start, bs)
}

// fatTime is t as a FAT date and time (two-second steps), in UTC and
// within FAT's years 1980 to 2107.
func fatTime(t int64) (date, clock uint16) {
	u := time.Unix(min(max(t, fatEpoch), time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC).Unix()), 0).UTC()
	date = uint16((u.Year()-1980)<<9 | int(u.Month())<<5 | u.Day())
	clock = uint16(u.Hour()<<11 | u.Minute()<<5 | u.Second()/2)
	return date, clock
}

// stampFAT sets the creation, access and modification times of every
// directory entry in the FAT32 file system at off (boot sector bs) to
// date and clock: go-diskfs and mtools date entries with the wall clock.
func stampFAT(rw backend.WritableFile, off int64, bs []byte, date, clock uint16) error {
	le := binary.LittleEndian
	bps := int64(le.Uint16(bs[fatBytesPerSector:]))
	clusterSize := bps * int64(bs[fatSecPerCluster])
	fatStart := off + int64(le.Uint16(bs[fatReserved:]))*bps
	dataStart := fatStart + int64(bs[fatCount])*int64(le.Uint32(bs[fatSectorsPerFAT:]))*bps
	maxCluster := uint32(int64(le.Uint32(bs[fatSectorsPerFAT:])) * bps / 4)
	next := func(c uint32) (uint32, error) {
		var b [4]byte
		if _, err := rw.ReadAt(b[:], fatStart+int64(c)*4); err != nil {
			return 0, err
		}
		return le.Uint32(b[:]) & 0x0fffffff, nil
	}
	root := le.Uint32(bs[fatRootCluster:])
	buf := make([]byte, clusterSize)
	visited := map[uint32]bool{}
	var walk func(first uint32) error
	walk = func(first uint32) error {
		var subdirs []uint32
	chain:
		for c := first; c >= 2 && c < 0x0ffffff8; {
			if c > maxCluster || visited[c] {
				return fmt.Errorf("FAT: bad cluster chain at %d", c)
			}
			visited[c] = true
			at := dataStart + int64(c-2)*clusterSize
			if _, err := rw.ReadAt(buf, at); err != nil {
				return err
			}
			end := false
			for e := 0; e+32 <= len(buf); e += 32 {
				ent := buf[e : e+32]
				if ent[0] == 0 {
					end = true
					break
				}
				if ent[0] == 0xe5 || ent[11]&0x3f == 0x0f { // deleted, long name
					continue
				}
				ent[13] = 0
				le.PutUint16(ent[14:], clock)
				le.PutUint16(ent[16:], date)
				le.PutUint16(ent[18:], date)
				le.PutUint16(ent[22:], clock)
				le.PutUint16(ent[24:], date)
				cluster := uint32(le.Uint16(ent[20:]))<<16 | uint32(le.Uint16(ent[26:]))
				switch {
				case ent[11]&0x10 == 0:
				case string(ent[:11]) == "..         " && cluster == root:
					// go-diskfs points ".." at the root directory's
					// cluster; FAT wants 0 there.
					le.PutUint16(ent[20:], 0)
					le.PutUint16(ent[26:], 0)
				case ent[0] != '.':
					subdirs = append(subdirs, cluster)
				}
			}
			if _, err := rw.WriteAt(buf, at); err != nil {
				return err
			}
			if end {
				break chain
			}
			n, err := next(c)
			if err != nil {
				return err
			}
			c = n
		}
		for _, s := range subdirs {
			if err := walk(s); err != nil {
				return err
			}
		}
		return nil
	}
	return walk(root)
}

// countFreeClusters fills in the FSInfo sector's free cluster count and
// next free cluster, which go-diskfs leaves unknown (fsck.fat asks for
// them).
func countFreeClusters(rw backend.WritableFile, off int64, bs []byte) error {
	le := binary.LittleEndian
	bps := int64(le.Uint16(bs[fatBytesPerSector:]))
	reserved := int64(le.Uint16(bs[fatReserved:]))
	spf := int64(le.Uint32(bs[fatSectorsPerFAT:]))
	dataSectors := int64(le.Uint32(bs[0x20:])) - reserved - int64(bs[fatCount])*spf
	clusters := dataSectors / int64(bs[fatSecPerCluster])
	fat := make([]byte, (clusters+2)*4)
	if _, err := rw.ReadAt(fat, off+reserved*bps); err != nil {
		return err
	}
	var free, first uint32
	for c := int64(2); c < clusters+2; c++ {
		if le.Uint32(fat[c*4:])&0x0fffffff == 0 {
			if free == 0 {
				first = uint32(c)
			}
			free++
		}
	}
	fsinfo := make([]byte, bps)
	at := off + int64(le.Uint16(bs[0x30:]))*bps
	if _, err := rw.ReadAt(fsinfo, at); err != nil {
		return err
	}
	if le.Uint32(fsinfo[0:]) != 0x41615252 || le.Uint32(fsinfo[484:]) != 0x61417272 {
		return errors.New("no FAT32 FSInfo sector")
	}
	le.PutUint32(fsinfo[488:], free)
	le.PutUint32(fsinfo[492:], first)
	if _, err := rw.WriteAt(fsinfo, at); err != nil {
		return err
	}
	if backup := int64(le.Uint16(bs[fatBackupBoot:])); backup != 0 {
		// The backup FSInfo sector follows the backup boot sector.
		if _, err := rw.WriteAt(fsinfo, off+(backup+1)*bps); err != nil {
			return err
		}
	}
	return nil
}
