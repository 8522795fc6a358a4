package targets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/fgimg/fgimg/internal/cpio"
	"github.com/fgimg/fgimg/internal/rootpath"
	"github.com/fgimg/fgimg/lang"
)

// Media types of the netboot target's artifacts. The initramfs's type
// takes "+gzip" or "+zstd" when compressed.
const (
	MediaTypeKernel    = "application/vnd.fgimg.linux.kernel"
	MediaTypeInitramfs = "application/vnd.fgimg.linux.initramfs.cpio"
	MediaTypeIPXE      = "text/vnd.fgimg.ipxe"
	MediaTypePXELinux  = "text/vnd.fgimg.pxelinux"
)

// Netboot writes what a stateless bare-metal node boots from the network,
// as xCAT's packimage and Warewulf make it:
//
//   - vmlinuz: the image's kernel, the newest /boot/vmlinuz-* (or what
//     the /vmlinuz or /boot/vmlinuz symlink names);
//   - initramfs.cpio.gz, initramfs.cpio.zst or initramfs.cpio after
//     compression (gzip by default): the image's whole root
//     filesystem as a newc cpio archive (cpio.WriteTree), which the
//     kernel unpacks into its tmpfs root and runs /init from; when the
//     image has no /init, a symlink to sbin/init (or to systemd) is added;
//   - boot.ipxe and pxelinux.cfg: an iPXE script and a PXELINUX entry
//     booting the two with kernel_args, naming them relative to
//     themselves so the folder can be served as it is.
//
// It reads the tree from Input.Root and leaves it unchanged.
type Netboot struct{}

const (
	netbootKernelFile   = "vmlinuz"
	netbootIPXEFile     = "boot.ipxe"
	netbootPXELinuxFile = "pxelinux.cfg"
)

// NetbootSpec is a netboot target's hashed spec.
type NetbootSpec struct {
	Compression string   `json:"compression"` // gzip | zstd | none
	KernelArgs  []string `json:"kernel_args,omitempty"`
}

// Kind implements Spec.
func (*NetbootSpec) Kind() string { return "netboot" }

// Summary implements Spec.
func (s *NetbootSpec) Summary() string { return s.Compression }

// Name implements Kind.
func (Netboot) Name() string { return "netboot" }

// Schema implements Kind.
func (Netboot) Schema() *lang.TargetSchema {
	return &lang.TargetSchema{Attributes: []lang.TargetAttribute{
		compressionAttr("the initramfs's compression"),
		kernelArgsAttr,
	}}
}

// Spec implements Kind.
func (Netboot) Spec(t *lang.Target) Spec {
	return &NetbootSpec{Compression: t.Str("compression"), KernelArgs: t.Strs("kernel_args")}
}

// Boot implements Kind: the kernel and initramfs, with kernel_args.
func (Netboot) Boot(sp Spec) (*Boot, error) {
	spec, err := specAs[*NetbootSpec](sp, "netboot")
	if err != nil {
		return nil, err
	}
	return &Boot{Kernel: MediaTypeKernel, Initrd: MediaTypeInitramfs, Firmware: FirmwareAny, KernelArgs: spec.KernelArgs}, nil
}

// Write implements Kind.
func (Netboot) Write(ctx context.Context, in *Input, spec Spec, dir string) ([]Artifact, error) {
	arts, err := writeNetboot(ctx, in, spec, dir)
	if err != nil {
		return nil, fmt.Errorf("netboot target: %w", err)
	}
	return arts, nil
}

func writeNetboot(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	spec, err := specAs[*NetbootSpec](sp, "netboot")
	if err != nil {
		return nil, err
	}
	c, err := initramfsCompression(spec.Compression)
	if err != nil {
		return nil, err
	}
	if err := checkKernelArgs(spec.KernelArgs); err != nil {
		return nil, err
	}
	initrd, err := writeKernelAndRoot(ctx, in, c, dir)
	if err != nil {
		return nil, err
	}
	args := strings.Join(spec.KernelArgs, " ")
	id := string(in.Image.ID)
	if id == "" {
		id = "(no id)"
	}
	ipxe := fmt.Sprintf(`#!ipxe
# fgimg netboot, image %s.
# Serve this folder over HTTP or TFTP: the kernel and the initramfs are
# named relative to this script.
kernel %s initrd=%s%s
initrd %s
boot
`, id, netbootKernelFile, initrd, netbootArgs(args), initrd)
	pxelinux := fmt.Sprintf(`# fgimg netboot, image %s.
# A PXELINUX configuration (install it as pxelinux.cfg/default, or under
# the node's MAC or IP name): file names are relative to the TFTP folder
# of pxelinux.0, so put the kernel and the initramfs beside pxelinux.0.
DEFAULT fgimg
LABEL fgimg
  KERNEL %s
  APPEND initrd=%s%s
`, id, netbootKernelFile, initrd, netbootArgs(args))
	for _, script := range [][2]string{{netbootIPXEFile, ipxe}, {netbootPXELinuxFile, pxelinux}} {
		name, body := script[0], script[1]
		if err := writeFile(filepath.Join(dir, name), func(f *os.File) error {
			_, err := io.WriteString(f, body)
			return err
		}); err != nil {
			return nil, fmt.Errorf("writing %s: %w", name, err)
		}
	}
	return []Artifact{
		{Path: netbootKernelFile, MediaType: MediaTypeKernel},
		{Path: initrd, MediaType: c.mediaType},
		{Path: netbootIPXEFile, MediaType: MediaTypeIPXE},
		{Path: netbootPXELinuxFile, MediaType: MediaTypePXELinux},
	}, nil
}

// writeKernelAndRoot writes into dir the image's kernel (vmlinuz) and
// its whole root filesystem as an initramfs compressed with c, with an
// /init when the image has none, and returns the initramfs's name.
func writeKernelAndRoot(ctx context.Context, in *Input, c compression, dir string) (string, error) {
	if in.Root == "" {
		return "", errors.New("no root filesystem to read (Input.Root is empty)")
	}
	kernel, err := imageKernel(in)
	if err != nil {
		return "", err
	}
	extra, err := netbootInit(in)
	if err != nil {
		return "", err
	}
	if err := writeFile(filepath.Join(dir, netbootKernelFile), func(f *os.File) error {
		return copyFrom(f, kernel)
	}); err != nil {
		return "", fmt.Errorf("copying the kernel: %w", err)
	}
	initrd := "initramfs.cpio" + c.suffix
	if err := writeRootCpio(ctx, in, c, extra, filepath.Join(dir, initrd)); err != nil {
		return "", fmt.Errorf("writing %s: %w", initrd, err)
	}
	return initrd, nil
}

// WriteRootBoot writes into dir what a stateless node boots when its
// image is the root filesystem at in.Root, exactly as the netboot kind
// writes it: the image's kernel and its whole root as an initramfs
// (compression: gzip, zstd or none). It returns their paths. A kind
// whose Boot says Root boots this way: Warewulf 4.6 boots the image's
// own kernel with the image packed as a cpio archive.
func WriteRootBoot(ctx context.Context, in *Input, compression, dir string) (kernel, initrd string, err error) {
	c, err := initramfsCompression(compression)
	if err != nil {
		return "", "", err
	}
	name, err := writeKernelAndRoot(ctx, in, c, dir)
	if err != nil {
		return "", "", err
	}
	return filepath.Join(dir, netbootKernelFile), filepath.Join(dir, name), nil
}

// writeRootCpio writes the image's whole root filesystem, with extra, to
// path as a newc cpio archive compressed with c: an initramfs the kernel
// unpacks into its tmpfs root (and xCAT's packimage format).
func writeRootCpio(ctx context.Context, in *Input, c compression, extra []cpio.Header, path string) error {
	return writeFile(path, func(f *os.File) error {
		cw, err := c.open(f)
		if err != nil {
			return err
		}
		opts := cpio.TreeOptions{Epoch: in.SourceDateEpoch, Extra: extra}
		if err := cpio.WriteTree(ctx, cw, in.Root, opts); err != nil {
			cw.Close() // stops the compressor's goroutines
			return err
		}
		return cw.Close()
	})
}

func netbootArgs(s string) string {
	if s == "" {
		return ""
	}
	return " " + s
}

// initramfsCompression is compressionFor with the initramfs's names, and
// compressors whose memory stays bounded on machines with many cores.
func initramfsCompression(name string) (compression, error) {
	c, err := compressionFor(name)
	if err != nil {
		return c, err
	}
	switch name {
	case "gzip", "":
		c.mediaType, c.open = MediaTypeInitramfs+"+gzip", newGzip
	case "zstd":
		c.mediaType, c.open = MediaTypeInitramfs+"+zstd", newZstd
	default:
		c.mediaType = MediaTypeInitramfs
	}
	return c, nil
}

// netbootKernelPackage names the Debian package that installs a kernel for arch.
func netbootKernelPackage(arch string) string {
	flavour := map[string]string{"": "amd64", "i386": "686-pae", "armhf": "armmp", "ppc64el": "powerpc64le"}[arch]
	if flavour == "" {
		flavour = arch
	}
	return "linux-image-" + flavour
}

// findNetbootKernel returns the host path of the image's kernel: the newest
// boot/vmlinuz-* (findBootKernel, as disks choose it), else what vmlinuz or
// boot/vmlinuz points to; "" when there is none. Symlinks are resolved
// inside root.
func findNetbootKernel(root string) (string, error) {
	k, err := findBootKernel(root)
	if err != nil {
		return "", err
	}
	if k != nil {
		return k.vmlinuz, nil
	}
	for _, link := range []string{"vmlinuz", "boot/vmlinuz"} {
		if p, err := netbootRegularFile(root, link); p != "" || err != nil {
			return p, err
		}
	}
	return "", nil
}

// netbootRegularFile resolves name inside root and returns its host path when it
// is a regular file, "" when it is missing or something else.
func netbootRegularFile(root, name string) (string, error) {
	p, err := rootpath.Join(root, name, rootpath.InRoot)
	if err != nil {
		return "", fmt.Errorf("resolving /%s: %w", name, err)
	}
	st, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR):
		return "", nil
	case err != nil:
		return "", err
	case !st.Mode().IsRegular():
		return "", nil
	}
	return p, nil
}

// netbootInit returns the /init symlink to add to the initramfs when the
// image has no /init: the kernel runs /init from an initramfs.
func netbootInit(in *Input) ([]cpio.Header, error) {
	if _, err := os.Lstat(filepath.Join(in.Root, "init")); err == nil {
		return nil, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, target := range []string{"sbin/init", "lib/systemd/systemd", "usr/lib/systemd/systemd"} {
		p, err := netbootRegularFile(in.Root, target)
		if err != nil {
			return nil, err
		}
		if p == "" {
			continue
		}
		h := cpio.Header{Name: "init", Mode: cpio.TypeSymlink | 0o777, Linkname: target}
		if in.SourceDateEpoch != nil {
			h.Mtime = in.SourceDateEpoch.Unix()
		}
		return []cpio.Header{h}, nil
	}
	return nil, fmt.Errorf("image %q has no /init, /sbin/init or systemd for the kernel to start: add systemd-sysv (Debian) to its packages", in.Image.Name)
}

func copyFrom(dst *os.File, src string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.CopyBuffer(dst, f, make([]byte, copyBufferSize))
	return err
}
