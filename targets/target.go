package targets

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/stages"
)

// Kind is one target kind, declared in one place: its attributes (the
// schema lang checks templates against), its hashed spec, what it
// writes and how it boots. Every kind is listed once in kinds (kinds.go);
// plan, build, boot and inspect ask the kind and never its name.
type Kind interface {
	// Name is the kind as templates write it: target "<name>" "…".
	Name() string
	// Schema lists the kind's attributes besides image: types, defaults,
	// enums and validation, reported by lang as diagnostics.
	Schema() *lang.TargetSchema
	// Spec is target t's hashed spec: its attributes and every name or
	// piece of metadata its writer puts into the artifacts. The image's
	// content is not in it: it comes in through the image's last stage.
	Spec(t *lang.Target) Spec
	// Write makes the artifacts of a target with spec in dir (empty,
	// created by the caller). The same input gives the same bytes. It
	// reads nothing of the image but in and spec.
	Write(ctx context.Context, in *Input, spec Spec, dir string) ([]Artifact, error)
	// Boot says how fgimg boot starts what Write made, or why it cannot.
	Boot(spec Spec) (*Boot, error)
}

// Adapter is a Kind that changes the image before writing it (a disk's
// fstab and ESP kernel hook; later cloud-init, contextualization): the
// changes are ordinary stages (package stages) that the planner puts on
// top of the image's last stage, cached and shared by every target with
// the same adaptation of the same image. The writer then gets the
// adapted image and only writes. Kinds without one (tar, oci, netboot)
// write the image as it is.
type Adapter interface {
	// Adapt returns the stages that adapt the image whose last stage is
	// image to a target with spec, bottom first. The same spec and image
	// give the same stages.
	Adapt(spec Spec, image digest.Digest) []stages.Spec
}

// Spec is the hashed part of a target: it marshals to canonical JSON
// that decides its artifacts, with the image's last stage digest.
type Spec interface {
	// Kind is the target kind, such as "qcow2".
	Kind() string
	// Summary is a short description for plan output, such as
	// "hybrid boot, 8GiB, compressed".
	Summary() string
}

// Layer is one stage's result: an OCI layer stored in the cache.
type Layer struct {
	Digest digest.Digest // of the uncompressed tar (= its diff_id)
	Size   int64
	Path   string // the blob file in the cache: an uncompressed tar, random access allowed
	Kind   string // stage kind, for history entries
}

// ImageInfo identifies the image a target is made from. Everything in it
// is covered by ID (the architecture is part of the origin stage), but
// Name, which is for error messages only: what a writer writes about the
// image comes from its Spec.
type ImageInfo struct {
	Name string        // for messages only
	ID   digest.Digest // the image's last stage digest, before any adaptation
	Arch string        // Debian name, such as "amd64"
}

// Input is everything a writer makes artifacts from besides its Spec.
type Input struct {
	Image ImageInfo
	// Digest is the write's digest in the plan (its spec and the image
	// it writes), for writers that record it (register.json); empty
	// when the caller has no plan.
	Digest digest.Digest
	// Layers are the image's whole chain, bottom (origin) first, with
	// the kind's adaptation stages (Adapter) on top.
	Layers          []Layer
	SourceDateEpoch *time.Time
	// Root is the adapted image's root filesystem as a directory, for
	// reading: writers change nothing in it (what a kind changes in the
	// image is its adaptation stages). Empty when the caller provides
	// none; tar and oci use Layers only.
	Root string
}

// Artifact is one file a writer made.
type Artifact struct {
	Path      string // relative to the output directory, slash-separated
	MediaType string
}

// Boot is how fgimg boot starts a target's artifacts in QEMU: a disk, or
// a kernel and initramfs. Artifacts are found by media type in the
// target's manifest.json.
type Boot struct {
	// Disk is the disk's media type and Format its QEMU format (raw,
	// qcow2); empty for a kernel boot.
	Disk, Format string
	// Kernel and Initrd are media types; Initrd matches with any
	// "+gzip"-like suffix.
	Kernel, Initrd string
	// Firmware is FirmwareBIOS, FirmwareUEFI or FirmwareAny (BIOS unless
	// UEFI is asked for).
	Firmware string
	// KernelArgs is the kernel command line: passed to a kernel boot,
	// shown in hints for a disk.
	KernelArgs []string
	// Root says that no artifact boots as it is: the node boots the
	// image's root filesystem, packed by WriteRootBoot into a kernel
	// and an initramfs (Warewulf builds its node image from the root
	// filesystem it imports). Kernel and Initrd are then empty.
	Root bool
}

// Firmware a target boots with.
const (
	FirmwareBIOS = "bios"
	FirmwareUEFI = "uefi"
	FirmwareAny  = "any"
)

// For returns the kind named name.
func For(name string) (Kind, error) {
	for _, k := range kinds {
		if k.Name() == name {
			return k, nil
		}
	}
	return nil, fmt.Errorf("unknown target kind %q", name)
}

// Kinds returns every kind fgimg builds, by name.
func Kinds() []Kind {
	out := append([]Kind(nil), kinds...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// Schemas returns the schemas lang loads templates with
// (lang.LoadOptions.TargetKinds): every kind's.
func Schemas() map[string]*lang.TargetSchema {
	m := map[string]*lang.TargetSchema{}
	for _, k := range kinds {
		m[k.Name()] = k.Schema()
	}
	return m
}

// specAs returns spec as the kind's own spec type.
func specAs[T Spec](spec Spec, kind string) (T, error) {
	s, ok := spec.(T)
	if !ok {
		var zero T
		if spec == nil {
			return zero, fmt.Errorf("%s writer given no spec", kind)
		}
		return zero, fmt.Errorf("%s writer given a %q target", kind, spec.Kind())
	}
	return s, nil
}

// Attributes several kinds share.

func compressionAttr(doc string) lang.TargetAttribute {
	return lang.TargetAttribute{
		Name: "compression", Type: cty.String, Default: cty.StringVal("gzip"),
		Enum: []string{"gzip", "zstd", "none"}, Doc: doc,
	}
}

var kernelArgsAttr = lang.TargetAttribute{
	Name: "kernel_args", Type: cty.List(cty.String), Validate: validateKernelArgs,
	Doc: "the kernel command line's extra arguments",
}

// validateKernelArgs rejects arguments that would break a boot loader's
// configuration or a boot script, where each goes on one line.
func validateKernelArgs(v cty.Value) error {
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if err := checkKernelArg(e.AsString()); err != nil {
			return err
		}
	}
	return nil
}

func checkKernelArg(a string) error {
	if a == "" {
		return errors.New("empty kernel argument")
	}
	if strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("kernel argument %q contains a control character", a)
	}
	return nil
}

func checkKernelArgs(args []string) error {
	for _, a := range args {
		if err := checkKernelArg(a); err != nil {
			return err
		}
	}
	return nil
}
