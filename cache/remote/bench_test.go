package remote

import (
	"context"
	"encoding/json"
	"io"
	"math/rand"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/internal/registrytest"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// BenchmarkPull1GB pulls a stage of one 1 GiB layer from the local
// docker-registry into an empty cache, beside `skopeo copy` of an image
// whose one layer is the same blob (to an OCI layout, which verifies it
// as fgimg does). The bar: fgimg at most 1.0× skopeo.
func BenchmarkPull1GB(b *testing.B) {
	skopeo := testkit.Need(b, "skopeo")[0]
	reg := registrytest.Start(b, registrytest.Options{})
	ctx := context.Background()
	src, err := cache.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	w, _ := src.NewBlob()
	rnd := rand.New(rand.NewSource(1))
	if _, err := io.CopyN(w, rnd, 1<<30); err != nil {
		b.Fatal(err)
	}
	layer, err := w.Commit()
	if err != nil {
		b.Fatal(err)
	}
	rec := cache.Record{Digest: digest.FromString("bench 1 GiB"), Kind: "bootstrap",
		Outputs: []cache.Output{{Name: "layer.tar", Digest: layer.Digest, Size: layer.Size}}}
	if err := src.PutRecord(rec); err != nil {
		b.Fatal(err)
	}
	r, err := Open(reg.Addr+"/fgimg", Options{Credentials: staticCredential{}})
	if err != nil {
		b.Fatal(err)
	}
	k := Key{Namespace: "public", Kind: Stage, Digest: rec.Digest}
	if _, err := r.Push(ctx, src, k, nil); err != nil {
		b.Fatal(err)
	}
	// The same blob as an image's layer, for skopeo.
	repo, _ := r.Repo("public")
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}}})
	cfgDesc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageConfig, cfg)
	if err := pushBytes(ctx, repo, cfgDesc, cfg); err != nil {
		b.Fatal(err)
	}
	if _, err := pushManifest(ctx, repo, ocispec.Manifest{Config: cfgDesc, Layers: []ocispec.Descriptor{
		{MediaType: ocispec.MediaTypeImageLayer, Digest: layer.Digest, Size: layer.Size}}}, "bench-image"); err != nil {
		b.Fatal(err)
	}

	b.Run("fgimg", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			dst, err := cache.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			o, err := r.Get(ctx, k)
			if err == nil {
				_, err = r.Pull(ctx, dst, o)
			}
			total += time.Since(start)
			dst.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/pull")
	})
	b.Run("skopeo", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			dir := filepath.Join(b.TempDir(), "layout")
			start := time.Now()
			out, err := exec.Command(skopeo, "copy", "--quiet", "--src-tls-verify=false",
				"docker://"+reg.Addr+"/fgimg/public:bench-image", "oci:"+dir+":x").CombinedOutput()
			total += time.Since(start)
			if err != nil {
				b.Fatalf("skopeo copy: %v\n%s", err, out)
			}
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/pull")
	})
}
