package targets

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/internal/qcow2"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/stages"
)

// MediaTypeQCOW2 is a qcow2 disk image's media type (shared-mime-info's).
const MediaTypeQCOW2 = "application/x-qemu-disk"

// QCOW2 is the qcow2 kind: the image as a bootable qcow2 (version 3)
// disk, disk.qcow2: the disk Raw writes, made by BuildDisk into a
// temporary sparse file in the same folder and converted natively
// (package qcow2), with all-zero clusters unallocated and, with
// compress, deflated clusters.
type QCOW2 struct{}

// QCOW2Spec is a qcow2 target's hashed spec.
type QCOW2Spec struct {
	DiskSpec
	Compress bool `json:"compress,omitempty"`
}

// Kind implements Spec.
func (*QCOW2Spec) Kind() string { return "qcow2" }

// Summary implements Spec.
func (s *QCOW2Spec) Summary() string {
	out := s.DiskSpec.Summary()
	if s.Compress {
		out += ", compressed"
	}
	return out
}

// Name implements Kind.
func (QCOW2) Name() string { return "qcow2" }

// Schema implements Kind.
func (QCOW2) Schema() *lang.TargetSchema {
	s := diskSchema()
	s.Attributes = append(s.Attributes, lang.TargetAttribute{
		Name: "compress", Type: cty.Bool, Default: cty.False, Doc: "deflate the disk's clusters"})
	return s
}

// Spec implements Kind.
func (QCOW2) Spec(t *lang.Target) Spec {
	return &QCOW2Spec{DiskSpec: diskSpec(t), Compress: t.Bool("compress")}
}

// Adapt implements Adapter: the disk's fstab and ESP kernel hook.
func (QCOW2) Adapt(_ Spec, image digest.Digest) []stages.Spec { return AdaptDisk(image) }

// Boot implements Kind.
func (QCOW2) Boot(sp Spec) (*Boot, error) {
	spec, err := specAs[*QCOW2Spec](sp, "qcow2")
	if err != nil {
		return nil, err
	}
	return spec.boot(MediaTypeQCOW2, "qcow2")
}

// Write implements Kind.
func (QCOW2) Write(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	spec, err := specAs[*QCOW2Spec](sp, "qcow2")
	if err != nil {
		return nil, err
	}
	a, _, err := writeDisk(ctx, in, &spec.DiskSpec, dir, "qcow2", spec.Compress)
	if err != nil {
		return nil, fmt.Errorf("qcow2 target: %w", err)
	}
	return []Artifact{a}, nil
}

// writeDisk writes the disk of spec into dir as disk.raw or, for format
// qcow2, disk.qcow2 (compressed with compress): BuildDisk makes the raw
// disk, for qcow2 a temporary sparse file beside it, on the same file
// system, converted natively and removed whatever happens.
func writeDisk(ctx context.Context, in *Input, spec *DiskSpec, dir, format string, compress bool) (a Artifact, info DiskInfo, err error) {
	if format == "raw" {
		info, err = BuildDisk(ctx, in, spec, filepath.Join(dir, "disk.raw"))
		return Artifact{Path: "disk.raw", MediaType: MediaTypeRawDisk}, info, err
	}
	raw := filepath.Join(dir, ".disk.raw.tmp")
	defer func() {
		if rerr := os.Remove(raw); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
	}()
	if info, err = BuildDisk(ctx, in, spec, raw); err != nil {
		return a, info, err
	}
	if _, err := qcow2.ConvertFile(ctx, filepath.Join(dir, "disk.qcow2"), raw, qcow2.Options{Compress: compress}); err != nil {
		return a, info, err
	}
	return Artifact{Path: "disk.qcow2", MediaType: MediaTypeQCOW2}, info, nil
}
