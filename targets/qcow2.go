package targets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fgimg/fgimg/internal/qcow2"
)

// MediaTypeQCOW2 is a qcow2 disk image's media type (shared-mime-info's).
const MediaTypeQCOW2 = "application/x-qemu-disk"

// QCOW2 writes the image as a bootable qcow2 (version 3) disk,
// disk.qcow2: the disk Raw writes, made by BuildDisk into a temporary
// sparse file in the same folder and converted natively (package qcow2), with
// all-zero clusters unallocated and, with Spec.Compress, deflated
// clusters.
type QCOW2 struct{}

var _ Writer = QCOW2{}

// Write implements Writer.
func (QCOW2) Write(ctx context.Context, in *Input, spec *Spec, dir string) (arts []Artifact, err error) {
	if err := checkKind(spec, "qcow2"); err != nil {
		return nil, err
	}
	// The raw disk goes beside the artifact (dir is the writer's own),
	// on the same file system, and is removed whatever happens.
	raw := filepath.Join(dir, ".disk.raw.tmp")
	defer func() {
		if rerr := os.Remove(raw); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = fmt.Errorf("qcow2 target: %w", rerr)
		}
	}()
	if _, err := BuildDisk(ctx, in, spec, raw); err != nil {
		return nil, fmt.Errorf("qcow2 target: %w", err)
	}
	opts := qcow2.Options{Compress: spec != nil && spec.Compress}
	if _, err := qcow2.ConvertFile(ctx, filepath.Join(dir, "disk.qcow2"), raw, opts); err != nil {
		return nil, fmt.Errorf("qcow2 target: %w", err)
	}
	return []Artifact{{Path: "disk.qcow2", MediaType: MediaTypeQCOW2}}, nil
}
