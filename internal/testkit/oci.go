package testkit

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fgimg/fgimg/internal/layer"
)

// OCILayout writes an OCI image layout at dir holding one image tagged
// "latest" (annotation org.opencontainers.image.ref.name) and returns its
// manifest digest. Each func fills a fresh empty directory that becomes
// one gzip layer, bottom first; a func makes whiteouts by creating empty
// files named ".wh.<name>" or ".wh..wh..opq". Layers are written with
// layer.WriteTree clamped to Epoch, so the same funcs give the same
// digest. The config has os "linux", the host's architecture and the
// layers' diff_ids.
func OCILayout(t testing.TB, dir string, layers ...func(dir string)) digest.Digest {
	t.Helper()
	return OCILayoutTag(t, dir, "latest", layers...)
}

// OCILayoutTag is OCILayout with a chosen tag. It adds to a layout
// already at dir, replacing an image with the same tag.
func OCILayoutTag(t testing.TB, dir, tag string, layers ...func(dir string)) digest.Digest {
	t.Helper()
	d, err := ociLayout(t, dir, tag, layers)
	if err != nil {
		t.Fatalf("testkit: writing OCI layout %s: %v", dir, err)
	}
	return d
}

func ociLayout(t testing.TB, dir, tag string, layers []func(string)) (digest.Digest, error) {
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		return "", err
	}
	platform := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
	config := ocispec.Image{
		Created:  &Epoch,
		Platform: platform,
		Config: ocispec.ImageConfig{
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cmd: []string{"/bin/sh"},
		},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Layers:    []ocispec.Descriptor{},
	}
	for i, fill := range layers {
		tree := t.TempDir()
		fill(tree)
		desc, diffID, err := writeLayer(dir, tree)
		if err != nil {
			return "", fmt.Errorf("layer %d: %w", i, err)
		}
		manifest.Layers = append(manifest.Layers, desc)
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, diffID)
		config.History = append(config.History, ocispec.History{Created: &Epoch, CreatedBy: fmt.Sprintf("testkit layer %d", i)})
	}
	var err error
	if manifest.Config, err = writeJSON(dir, ocispec.MediaTypeImageConfig, config); err != nil {
		return "", err
	}
	mdesc, err := writeJSON(dir, ocispec.MediaTypeImageManifest, manifest)
	if err != nil {
		return "", err
	}
	mdesc.Platform = &platform
	mdesc.Annotations = map[string]string{ocispec.AnnotationRefName: tag}

	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
	}
	if b, err := os.ReadFile(filepath.Join(dir, ocispec.ImageIndexFile)); err == nil {
		if err := json.Unmarshal(b, &index); err != nil {
			return "", fmt.Errorf("existing %s: %w", ocispec.ImageIndexFile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	kept := []ocispec.Descriptor{}
	for _, m := range index.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] != tag {
			kept = append(kept, m)
		}
	}
	index.Manifests = append(kept, mdesc)
	if err := writeFileJSON(filepath.Join(dir, ocispec.ImageIndexFile), index); err != nil {
		return "", err
	}
	if err := writeFileJSON(filepath.Join(dir, ocispec.ImageLayoutFile), ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}); err != nil {
		return "", err
	}
	return mdesc.Digest, nil
}

// writeLayer stores tree as a gzip layer blob in the layout at dir,
// hashing the tar (diff_id) and the compressed blob in one pass.
func writeLayer(dir, tree string) (ocispec.Descriptor, digest.Digest, error) {
	tmp, err := os.CreateTemp(filepath.Join(dir, "blobs", "sha256"), ".layer-*")
	if err != nil {
		return ocispec.Descriptor{}, "", err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	defer tmp.Close()

	blobHash, tarHash := sha256.New(), sha256.New()
	counter := &countWriter{w: io.MultiWriter(tmp, blobHash)}
	zw := gzip.NewWriter(counter)
	if err := layer.WriteTree(io.MultiWriter(zw, tarHash), tree, layer.Options{SourceDateEpoch: &Epoch}); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if err := zw.Close(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	if err := tmp.Close(); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	d := digest.NewDigestFromBytes(digest.SHA256, blobHash.Sum(nil))
	if err := os.Rename(tmp.Name(), filepath.Join(dir, "blobs", "sha256", d.Encoded())); err != nil {
		return ocispec.Descriptor{}, "", err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: counter.n}
	return desc, digest.NewDigestFromBytes(digest.SHA256, tarHash.Sum(nil)), nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// writeJSON stores v as a blob and returns its descriptor.
func writeJSON(dir, mediaType string, v any) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(dir, "blobs", "sha256", d.Encoded()), b, 0o644); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}

func writeFileJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// RootfsTar writes the tree at dir as a plain, uncompressed tar at path
// (with layer.WriteTree: sorted, numeric owners, hard links and devices
// kept), as a bootstrap stage would be given.
func RootfsTar(t testing.TB, path, dir string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("testkit: %v", err)
	}
	if err := layer.WriteTree(f, dir, layer.Options{}); err != nil {
		f.Close()
		t.Fatalf("testkit: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("testkit: %v", err)
	}
}
