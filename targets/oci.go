package targets

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fgimg/fgimg/lang"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fgimg/fgimg/internal/arch"
)

// Annotations fgimg puts on the manifest beside the standard
// org.opencontainers.image.title, .description and .created.
const (
	AnnotationImageID    = "io.fgimg.image.id"   // the image's last stage digest
	AnnotationPedigree   = "io.fgimg.pedigree"   // image names, root first, comma-separated
	AnnotationTags       = "io.fgimg.tags"       // comma-separated
	AnnotationOwner      = "io.fgimg.owner"      //
	AnnotationPermission = "io.fgimg.permission" // private, public or group:<name>
	AnnotationOS         = "io.fgimg.os"         // the image's os metadata, such as "debian-12"
)

// RefName is the one reference (org.opencontainers.image.ref.name) the
// layout's index gives the image, so that it opens as oci:DIR:latest.
// The image name is in the manifest's title annotation instead: a layout
// holds this one image, so a second reference would add nothing.
const RefName = "latest"

// OCI is the oci kind: an OCI image layout (oci-layout, index.json and
// blobs/sha256/) with one gzip layer per stage, bottom first. The config
// has os "linux", the image's architecture (Debian names translated to
// OCI's by internal/arch: armhf is arm/v7, arm64 is arm64/v8), the layers'
// diff_ids, one history entry per layer ("fgimg <kind> stage") and the
// image's labels; the manifest's annotations carry the image's name,
// pedigree and metadata. Times are set only from SourceDateEpoch;
// without it the layout has none. Empty metadata gives no annotation.
type OCI struct{}

// OCISpec is an oci target's hashed spec: the names and metadata the
// layout carries, so that editing them rewrites it.
type OCISpec struct {
	Title       string            `json:"title"` // the image's name
	Pedigree    []string          `json:"pedigree,omitempty"`
	Description string            `json:"description,omitempty"`
	OS          string            `json:"os,omitempty"`
	Tags        []string          `json:"tags,omitempty"`
	Owner       string            `json:"owner,omitempty"`
	Permission  string            `json:"permission,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Kind implements Spec.
func (*OCISpec) Kind() string { return "oci" }

// Summary implements Spec.
func (s *OCISpec) Summary() string { return "image layout" }

// Name implements Kind.
func (OCI) Name() string { return "oci" }

// Schema implements Kind: an oci target has no attribute but image.
func (OCI) Schema() *lang.TargetSchema { return &lang.TargetSchema{} }

// Spec implements Kind.
func (OCI) Spec(t *lang.Target) Spec {
	im := t.Image
	s := &OCISpec{
		Title: im.Name, Description: im.Meta.Description, OS: im.Meta.OS, Tags: im.Meta.Tags,
		Owner: im.Meta.Owner, Permission: im.Meta.Permission, Labels: im.Meta.Labels,
	}
	for _, p := range im.Pedigree() {
		s.Pedigree = append(s.Pedigree, p.Name)
	}
	return s
}

// Boot implements Kind: a container image does not boot.
func (OCI) Boot(Spec) (*Boot, error) {
	return nil, errors.New("an OCI image runs in a container engine, not on a machine")
}

// Write implements Kind.
func (OCI) Write(ctx context.Context, in *Input, sp Spec, dir string) ([]Artifact, error) {
	spec, err := specAs[*OCISpec](sp, "oci")
	if err != nil {
		return nil, err
	}
	arts, err := writeOCI(ctx, in, spec, dir)
	if err != nil {
		return nil, fmt.Errorf("oci target: %w", err)
	}
	return arts, nil
}

func writeOCI(ctx context.Context, in *Input, spec *OCISpec, dir string) ([]Artifact, error) {
	blobs := filepath.Join(dir, ocispec.ImageBlobsDir, "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	platform, err := ociPlatform(in.Image.Arch)
	if err != nil {
		return nil, err
	}
	var created *time.Time
	if in.SourceDateEpoch != nil {
		t := in.SourceDateEpoch.UTC()
		created = &t
	}

	arts := map[string]string{} // path → media type
	config := ocispec.Image{
		Created:  created,
		Platform: platform,
		Config:   ocispec.ImageConfig{Labels: spec.Labels},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
		History:  []ocispec.History{},
	}
	manifest := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Layers:    []ocispec.Descriptor{},
	}
	for i, l := range in.Layers {
		desc, err := writeLayerBlob(ctx, blobs, l)
		if err != nil {
			return nil, fmt.Errorf("layer %d (%s): %w", i, l.Digest, err)
		}
		arts[blobPath(desc.Digest)] = desc.MediaType
		manifest.Layers = append(manifest.Layers, desc)
		config.RootFS.DiffIDs = append(config.RootFS.DiffIDs, l.Digest)
		config.History = append(config.History, ocispec.History{
			Created:   created,
			CreatedBy: strings.Join(strings.Fields("fgimg "+l.Kind+" stage"), " "),
		})
	}

	if manifest.Config, err = writeJSONBlob(blobs, ocispec.MediaTypeImageConfig, config); err != nil {
		return nil, fmt.Errorf("writing config: %w", err)
	}
	arts[blobPath(manifest.Config.Digest)] = manifest.Config.MediaType
	manifest.Annotations = manifestAnnotations(in, spec)
	mdesc, err := writeJSONBlob(blobs, ocispec.MediaTypeImageManifest, manifest)
	if err != nil {
		return nil, fmt.Errorf("writing manifest: %w", err)
	}
	arts[blobPath(mdesc.Digest)] = mdesc.MediaType

	mdesc.Platform = &platform
	mdesc.Annotations = map[string]string{ocispec.AnnotationRefName: RefName}
	index := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{mdesc},
	}
	if err := writeJSONFile(filepath.Join(dir, ocispec.ImageIndexFile), index); err != nil {
		return nil, err
	}
	arts[ocispec.ImageIndexFile] = ocispec.MediaTypeImageIndex
	if err := writeJSONFile(filepath.Join(dir, ocispec.ImageLayoutFile), ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}); err != nil {
		return nil, err
	}
	arts[ocispec.ImageLayoutFile] = ocispec.MediaTypeLayoutHeader

	out := make([]Artifact, 0, len(arts))
	for p, mt := range arts {
		out = append(out, Artifact{Path: p, MediaType: mt})
	}
	slices.SortFunc(out, func(a, b Artifact) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

func manifestAnnotations(in *Input, m *OCISpec) map[string]string {
	a := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			a[k] = v
		}
	}
	set(ocispec.AnnotationTitle, m.Title)
	set(ocispec.AnnotationDescription, m.Description)
	if in.SourceDateEpoch != nil {
		set(ocispec.AnnotationCreated, in.SourceDateEpoch.UTC().Format(time.RFC3339))
	}
	set(AnnotationImageID, in.Image.ID.String())
	set(AnnotationPedigree, strings.Join(m.Pedigree, ","))
	set(AnnotationTags, strings.Join(m.Tags, ","))
	set(AnnotationOwner, m.Owner)
	set(AnnotationPermission, m.Permission)
	set(AnnotationOS, m.OS)
	if len(a) == 0 {
		return nil
	}
	return a
}

// ociPlatform translates a Debian architecture name into an OCI platform.
func ociPlatform(name string) (ocispec.Platform, error) {
	if name == "" {
		return ocispec.Platform{}, errors.New("the image has no architecture")
	}
	a, ok := arch.ByDebian(name)
	if !ok {
		return ocispec.Platform{}, fmt.Errorf("unknown architecture %q", name)
	}
	return ocispec.Platform{OS: "linux", Architecture: a.OCI, Variant: a.Variant}, nil
}

func blobPath(d digest.Digest) string {
	return ocispec.ImageBlobsDir + "/" + d.Algorithm().String() + "/" + d.Encoded()
}

// writeLayerBlob gzips the layer into blobs, checking on the way that the
// layer file still has the digest (and size) it is recorded with.
func writeLayerBlob(ctx context.Context, blobs string, l Layer) (ocispec.Descriptor, error) {
	if err := l.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer digest: %w", err)
	}
	src, err := os.Open(l.Path)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer src.Close()

	tmp, err := os.CreateTemp(blobs, ".layer-*")
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	defer tmp.Close()

	blobHash := sha256.New()
	counter := &countWriter{w: io.MultiWriter(tmp, blobHash)}
	bw := bufio.NewWriterSize(counter, copyBufferSize)
	zw, err := newGzip(bw)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	tarHash := l.Digest.Algorithm().Hash()
	n, err := io.CopyBuffer(io.MultiWriter(zw, tarHash), &ctxReader{ctx: ctx, r: src}, make([]byte, copyBufferSize))
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("compressing %s: %w", l.Path, err)
	}
	if got := digest.NewDigest(l.Digest.Algorithm(), tarHash); got != l.Digest {
		return ocispec.Descriptor{}, fmt.Errorf("%s has digest %s, not the layer's", l.Path, got)
	}
	if l.Size != 0 && n != l.Size {
		return ocispec.Descriptor{}, fmt.Errorf("%s has %d bytes, not the layer's %d", l.Path, n, l.Size)
	}
	if err := bw.Flush(); err != nil {
		return ocispec.Descriptor{}, err
	}
	if err := tmp.Close(); err != nil {
		return ocispec.Descriptor{}, err
	}
	d := digest.NewDigest(digest.SHA256, blobHash)
	if err := os.Rename(tmp.Name(), filepath.Join(blobs, d.Encoded())); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: counter.n}, nil
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

// writeJSONBlob stores v as a blob and returns its descriptor.
func writeJSONBlob(blobs, mediaType string, v any) (ocispec.Descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	d := digest.FromBytes(b)
	if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), b, 0o644); err != nil {
		return ocispec.Descriptor{}, err
	}
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}

func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}
