package targets

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containers/image/v5/oci/layout"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fgimg/fgimg/internal/testkit"
)

func ociInput(t testing.TB, epoch *time.Time) *Input {
	return &Input{
		Image:           ImageInfo{Name: "hadoop", ID: digest.FromString("last stage"), Arch: "arm64"},
		Layers:          chain(t),
		SourceDateEpoch: epoch,
	}
}

// ociSpec is what the oci kind makes of image hadoop's names and metadata.
func ociSpec() *OCISpec {
	return &OCISpec{
		Title:       "hadoop",
		Pedigree:    []string{"base", "java", "hadoop"},
		Description: "Hadoop worker",
		OS:          "debian-12",
		Tags:        []string{"hadoop", "java"},
		Owner:       "alice",
		Permission:  "group:hpc",
		Labels:      map[string]string{"hadoop": "3.3.6", "team": "hpc"},
	}
}

type ociImage struct {
	manifest ocispec.Manifest
	config   ocispec.Image
	layers   [][]byte // blobs as stored
}

// openOCI reads the image at dir:latest through containers/image, the way
// fgimg's from stage and skopeo read it.
func openOCI(t *testing.T, dir string) ociImage {
	t.Helper()
	ctx := context.Background()
	ref, err := layout.NewReference(dir, "latest")
	if err != nil {
		t.Fatal(err)
	}
	src, err := ref.NewImageSource(ctx, &types.SystemContext{})
	if err != nil {
		t.Fatalf("opening layout: %v", err)
	}
	defer src.Close()
	mb, mt, err := src.GetManifest(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if mt != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest media type %q", mt)
	}
	var img ociImage
	if err := json.Unmarshal(mb, &img.manifest); err != nil {
		t.Fatal(err)
	}
	blob := func(d ocispec.Descriptor) []byte {
		t.Helper()
		rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: d.Digest, Size: d.Size}, none.NoCache)
		if err != nil {
			t.Fatalf("blob %s: %v", d.Digest, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatal(err)
		}
		if got := digest.FromBytes(b); got != d.Digest || int64(len(b)) != d.Size {
			t.Errorf("blob %s: has digest %s and %d bytes, descriptor says %d", d.Digest, got, len(b), d.Size)
		}
		return b
	}
	if err := json.Unmarshal(blob(img.manifest.Config), &img.config); err != nil {
		t.Fatal(err)
	}
	for _, l := range img.manifest.Layers {
		img.layers = append(img.layers, blob(l))
	}
	return img
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestOCILayout(t *testing.T) {
	epoch := time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)
	in := ociInput(t, &epoch)
	dir, arts := writeTarget(t, OCI{}, in, ociSpec())
	img := openOCI(t, dir)

	// Layers: gzip blobs of exactly the stage layers, in order.
	if len(img.layers) != len(in.Layers) {
		t.Fatalf("%d layers, want %d", len(img.layers), len(in.Layers))
	}
	for i, l := range in.Layers {
		if mt := img.manifest.Layers[i].MediaType; mt != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("layer %d: media type %s", i, mt)
		}
		orig, err := os.ReadFile(l.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(gunzip(t, img.layers[i]), orig) {
			t.Errorf("layer %d does not decompress to the stage's layer", i)
		}
	}

	c := img.config
	wantDiffIDs := []digest.Digest{in.Layers[0].Digest, in.Layers[1].Digest, in.Layers[2].Digest}
	if c.RootFS.Type != "layers" || !slices.Equal(c.RootFS.DiffIDs, wantDiffIDs) {
		t.Errorf("rootfs %+v, want diff_ids %v", c.RootFS, wantDiffIDs)
	}
	if c.OS != "linux" || c.Architecture != "arm64" || c.Created == nil || !c.Created.Equal(epoch) {
		t.Errorf("config os %q arch %q created %v", c.OS, c.Architecture, c.Created)
	}
	if !maps.Equal(c.Config.Labels, ociSpec().Labels) {
		t.Errorf("labels %v", c.Config.Labels)
	}
	var history []string
	for _, h := range c.History {
		if h.Created == nil || !h.Created.Equal(epoch) {
			t.Errorf("history %q created %v", h.CreatedBy, h.Created)
		}
		history = append(history, h.CreatedBy)
	}
	if want := []string{"fgimg bootstrap stage", "fgimg packages stage", "fgimg files stage"}; !slices.Equal(history, want) {
		t.Errorf("history %q, want %q", history, want)
	}

	wantAnn := map[string]string{
		"org.opencontainers.image.title":       "hadoop",
		"org.opencontainers.image.description": "Hadoop worker",
		"org.opencontainers.image.created":     "2024-02-03T04:05:06Z",
		"io.fgimg.image.id":                    in.Image.ID.String(),
		"io.fgimg.pedigree":                    "base,java,hadoop",
		"io.fgimg.tags":                        "hadoop,java",
		"io.fgimg.owner":                       "alice",
		"io.fgimg.permission":                  "group:hpc",
		"io.fgimg.os":                          "debian-12",
	}
	if !maps.Equal(img.manifest.Annotations, wantAnn) {
		t.Errorf("manifest annotations:\n%v\nwant:\n%v", img.manifest.Annotations, wantAnn)
	}

	// The artifacts are exactly the layout's files, with their types.
	var index ocispec.Index
	if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err != nil {
		t.Fatal(err)
	} else if err := json.Unmarshal(b, &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations[ocispec.AnnotationRefName] != "latest" ||
		index.Manifests[0].Platform == nil || index.Manifests[0].Platform.Architecture != "arm64" {
		t.Fatalf("index %+v", index)
	}
	want := map[string]string{
		"oci-layout":                         ocispec.MediaTypeLayoutHeader,
		"index.json":                         ocispec.MediaTypeImageIndex,
		blobPath(index.Manifests[0].Digest):  ocispec.MediaTypeImageManifest,
		blobPath(img.manifest.Config.Digest): ocispec.MediaTypeImageConfig,
	}
	for _, l := range img.manifest.Layers {
		want[blobPath(l.Digest)] = ocispec.MediaTypeImageLayerGzip
	}
	got := map[string]string{}
	for _, a := range arts {
		got[a.Path] = a.MediaType
	}
	if !maps.Equal(got, want) {
		t.Errorf("artifacts %v, want %v", got, want)
	}
	if files := listFiles(t, dir); !slices.Equal(files, slices.Sorted(maps.Keys(want))) {
		t.Errorf("files in layout %v, artifacts %v", files, slices.Sorted(maps.Keys(want)))
	}
}

func TestOCIDeterministic(t *testing.T) {
	in := ociInput(t, nil)
	a, artsA := writeTarget(t, OCI{}, in, ociSpec())
	b, artsB := writeTarget(t, OCI{}, in, ociSpec())
	if !slices.Equal(artsA, artsB) {
		t.Fatalf("artifacts differ: %v, %v", artsA, artsB)
	}
	for _, art := range artsA {
		x, err := os.ReadFile(filepath.Join(a, art.Path))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, art.Path))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs", art.Path)
		}
	}
}

// Without SOURCE_DATE_EPOCH the layout carries no time at all.
func TestOCINoEpoch(t *testing.T) {
	in := ociInput(t, nil)
	in.Image.Arch = "armhf"
	dir, _ := writeTarget(t, OCI{}, in, &OCISpec{Title: "hadoop"})
	img := openOCI(t, dir)
	if img.config.Created != nil {
		t.Errorf("config created %v", img.config.Created)
	}
	for _, h := range img.config.History {
		if h.Created != nil {
			t.Errorf("history created %v", h.Created)
		}
	}
	if _, ok := img.manifest.Annotations[ocispec.AnnotationCreated]; ok {
		t.Error("created annotation without an epoch")
	}
	for _, k := range []string{ocispec.AnnotationDescription, AnnotationTags, AnnotationOwner, AnnotationPermission} {
		if v, ok := img.manifest.Annotations[k]; ok {
			t.Errorf("annotation %s = %q for empty metadata", k, v)
		}
	}
	if c := img.config; c.Architecture != "arm" || c.Variant != "v7" || c.Config.Labels != nil {
		t.Errorf("armhf config: arch %q variant %q labels %v", c.Architecture, c.Variant, c.Config.Labels)
	}
}

func TestOCILayerDigestChecked(t *testing.T) {
	in := ociInput(t, nil)
	in.Layers[1].Digest = digest.FromString("something else")
	_, err := (OCI{}).Write(context.Background(), in, ociSpec(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "not the layer's") {
		t.Errorf("got %v, want a digest mismatch", err)
	}
}

// skopeo is what users will point at the layout.
func TestOCISkopeoInspect(t *testing.T) {
	testkit.Need(t, "skopeo")
	epoch := time.Date(2024, 2, 3, 4, 5, 6, 0, time.UTC)
	in := ociInput(t, &epoch)
	dir, _ := writeTarget(t, OCI{}, in, ociSpec())
	out, err := exec.Command("skopeo", "inspect", "oci:"+dir+":latest").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("skopeo inspect: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var got struct {
		Architecture string
		Os           string
		Created      *time.Time
		Labels       map[string]string
		Layers       []digest.Digest
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Architecture != "arm64" || got.Os != "linux" || got.Created == nil || !got.Created.Equal(epoch) ||
		!maps.Equal(got.Labels, ociSpec().Labels) || len(got.Layers) != len(in.Layers) {
		t.Errorf("skopeo inspect:\n%s", out)
	}
	img := openOCI(t, dir)
	for i, d := range got.Layers {
		if d != img.manifest.Layers[i].Digest {
			t.Errorf("layer %d: skopeo sees %s, manifest has %s", i, d, img.manifest.Layers[i].Digest)
		}
	}
}
