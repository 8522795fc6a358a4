package targets

import (
	"context"
	"errors"
	"fmt"

	"github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/stages"
)

// MediaTypeRawDisk is a raw disk image's media type (shared-mime-info's).
const MediaTypeRawDisk = "application/x-raw-disk-image"

// Raw is the raw kind: the image as a bootable raw disk, disk.raw, a
// sparse GPT disk with an EFI system partition and an ext4 root file
// system, made by BuildDisk from Input.Root.
type Raw struct{}

// RawSpec is a raw target's hashed spec.
type RawSpec struct {
	DiskSpec
}

// Kind implements Spec.
func (*RawSpec) Kind() string { return "raw" }

// Name implements Kind.
func (Raw) Name() string { return "raw" }

// Schema implements Kind.
func (Raw) Schema() *lang.TargetSchema { return diskSchema() }

// Spec implements Kind.
func (Raw) Spec(t *lang.Target) Spec { return &RawSpec{diskSpec(t)} }

// Adapt implements Adapter: the disk's fstab and ESP kernel hook.
func (Raw) Adapt(_ Spec, image digest.Digest) []stages.Spec { return AdaptDisk(image) }

// Boot implements Kind.
func (Raw) Boot(sp Spec) (*Boot, error) {
	spec, err := specAs[*RawSpec](sp, "raw")
	if err != nil {
		return nil, err
	}
	return spec.boot(MediaTypeRawDisk, "raw")
}

// Write implements Kind.
func (Raw) Write(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	spec, err := specAs[*RawSpec](sp, "raw")
	if err != nil {
		return nil, err
	}
	a, _, err := writeDisk(ctx, in, &spec.DiskSpec, dir, "raw", false)
	if err != nil {
		return nil, fmt.Errorf("raw target: %w", err)
	}
	return []Artifact{a}, nil
}

// DiskSpec is what raw and qcow2 targets share of their hashed spec.
type DiskSpec struct {
	Size       int64    `json:"size,omitempty"` // bytes; 0: the files plus headroom
	Boot       string   `json:"boot"`           // bios | uefi | hybrid | none
	KernelArgs []string `json:"kernel_args,omitempty"`
	Title      string   `json:"title"` // the boot menus' name for the image
}

// Summary implements Spec.
func (s *DiskSpec) Summary() string {
	out := s.Boot + " boot"
	if s.Size > 0 {
		out += ", " + formatDiskSize(s.Size, false)
	}
	return out
}

// boot says how a disk with this spec boots.
func (s *DiskSpec) boot(mediaType, format string) (*Boot, error) {
	b := &Boot{Disk: mediaType, Format: format, KernelArgs: s.KernelArgs}
	switch s.Boot {
	case BootNone:
		return nil, errors.New(`it has boot = "none": its disk has no boot loader, so it cannot boot by itself`)
	case BootBIOS:
		b.Firmware = FirmwareBIOS
	case BootUEFI:
		b.Firmware = FirmwareUEFI
	default:
		b.Firmware = FirmwareAny
	}
	return b, nil
}

// maxDiskSize is the largest size a disk target takes without
// allow_large_size: beyond it, a size is more likely a slip of the unit
// than a wish, and writing and converting the disk would take hours.
const maxDiskSize = 1 << 40

func diskSchema() *lang.TargetSchema {
	return &lang.TargetSchema{
		Attributes: []lang.TargetAttribute{
			{Name: "size", Type: cty.String, Validate: func(v cty.Value) error {
				_, err := lang.ParseSize(v.AsString())
				return err
			}, Doc: "the disk's size, such as \"8GiB\"; default: the files plus headroom"},
			{Name: "allow_large_size", Type: cty.Bool, Default: cty.False,
				Doc: "allow a size above 1TiB"},
			{Name: "boot", Type: cty.String, Default: cty.StringVal(BootHybrid),
				Enum: []string{BootBIOS, BootUEFI, BootHybrid, BootNone}, Doc: "the firmware the disk boots with"},
			kernelArgsAttr,
		},
		Check: func(v map[string]cty.Value) []lang.TargetProblem {
			size, large := v["size"], v["allow_large_size"]
			if !size.IsKnown() || size.IsNull() || (large.IsKnown() && !large.IsNull() && large.True()) {
				return nil
			}
			if n, err := lang.ParseSize(size.AsString()); err == nil && n > maxDiskSize {
				return []lang.TargetProblem{{Attribute: "size", Summary: "Disk size too large",
					Detail: fmt.Sprintf("A disk of %s is larger than the %s fgimg writes unless told: set allow_large_size = true if you mean it.",
						size.AsString(), formatDiskSize(maxDiskSize, false))}}
			}
			return nil
		},
	}
}

func diskSpec(t *lang.Target) DiskSpec {
	s := DiskSpec{Boot: t.Str("boot"), KernelArgs: t.Strs("kernel_args"), Title: t.Image.Name}
	if size := t.Str("size"); size != "" {
		s.Size, _ = lang.ParseSize(size) // checked by the schema
	}
	return s
}
