package targets

import (
	"context"
	"fmt"
	"path/filepath"
)

// MediaTypeRawDisk is a raw disk image's media type (shared-mime-info's).
const MediaTypeRawDisk = "application/x-raw-disk-image"

// Raw writes the image as a bootable raw disk, disk.raw: a sparse GPT
// disk with an EFI system partition and an ext4 root file system, made
// by BuildDisk from Input.Root.
type Raw struct{}

var _ Writer = Raw{}

// Write implements Writer.
func (Raw) Write(ctx context.Context, in *Input, spec *Spec, dir string) ([]Artifact, error) {
	if err := checkKind(spec, "raw"); err != nil {
		return nil, err
	}
	if _, err := BuildDisk(ctx, in, spec, filepath.Join(dir, "disk.raw")); err != nil {
		return nil, fmt.Errorf("raw target: %w", err)
	}
	return []Artifact{{Path: "disk.raw", MediaType: MediaTypeRawDisk}}, nil
}
