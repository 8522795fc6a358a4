package targets

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Tar writes the image's root filesystem as one tarball, rootfs.tar,
// rootfs.tar.gz or rootfs.tar.zst after Spec.Compression (none, gzip,
// zstd; gzip when empty), made by Squash from the image's layers. Sparse
// files are written sparse (GNU sparse 1.0; extract with tar -xS).
type Tar struct{}

// Write implements Writer.
func (Tar) Write(ctx context.Context, in *Input, spec *Spec, dir string) (arts []Artifact, err error) {
	if err := checkKind(spec, "tar"); err != nil {
		return nil, err
	}
	var c compression
	if spec != nil {
		c, err = compressionFor(spec.Compression)
	} else {
		c, err = compressionFor("")
	}
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
