package targets

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fgimg/fgimg/lang"
)

// Tar is the tar kind: the image's root filesystem as one tarball,
// rootfs.tar, rootfs.tar.gz or rootfs.tar.zst after compression (gzip,
// zstd or none), made by Squash from the image's layers. Sparse files
// are written sparse (GNU sparse 1.0; extract with tar -xS).
type Tar struct{}

// TarSpec is a tar target's hashed spec.
type TarSpec struct {
	Compression string `json:"compression"` // gzip | zstd | none
}

// Kind implements Spec.
func (*TarSpec) Kind() string { return "tar" }

// Summary implements Spec.
func (s *TarSpec) Summary() string { return s.Compression }

// Name implements Kind.
func (Tar) Name() string { return "tar" }

// Schema implements Kind.
func (Tar) Schema() *lang.TargetSchema {
	return &lang.TargetSchema{Attributes: []lang.TargetAttribute{compressionAttr("the tarball's compression")}}
}

// Spec implements Kind.
func (Tar) Spec(t *lang.Target) Spec { return &TarSpec{Compression: t.Str("compression")} }

// Boot implements Kind: a tarball does not boot.
func (Tar) Boot(Spec) (*Boot, error) {
	return nil, errors.New("a root filesystem tarball does not boot by itself")
}

// Write implements Kind.
func (Tar) Write(ctx context.Context, in *Input, sp Spec, dir string) (arts []Artifact, err error) {
	spec, err := specAs[*TarSpec](sp, "tar")
	if err != nil {
		return nil, err
	}
	c, err := compressionFor(spec.Compression)
	if err != nil {
		return nil, fmt.Errorf("tar target: %w", err)
	}
	name := "rootfs.tar" + c.suffix
	if err := writeFile(filepath.Join(dir, name), func(f *os.File) error {
		bw := bufio.NewWriterSize(f, copyBufferSize)
		cw, err := c.open(bw)
		if err != nil {
			return err
		}
		if err := Squash(ctx, cw, in.Layers, in.SourceDateEpoch); err != nil {
			cw.Close() // stops the compressor's goroutines
			return err
		}
		if err := cw.Close(); err != nil {
			return err
		}
		return bw.Flush()
	}); err != nil {
		return nil, fmt.Errorf("tar target: %w", err)
	}
	return []Artifact{{Path: name, MediaType: c.mediaType}}, nil
}

// writeFile creates path (which must not exist), fills it with fill and
// removes it again if anything fails.
func writeFile(path string, fill func(*os.File) error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	err = fill(f)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(err, os.Remove(path))
	}
	return nil
}
