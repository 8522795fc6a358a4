package targets

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// text returns n bytes of compressible pseudo-random text.
func text(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	words := strings.Fields("the quick brown fox jumps over a lazy dog while seven wizards quietly hex jovial bakers")
	b := make([]byte, 0, n+16)
	for len(b) < n {
		if r.IntN(8) == 0 {
			b = append(b, byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32()))
		}
		b = append(b, words[r.IntN(len(words))]...)
		b = append(b, ' ')
	}
	return b[:n]
}

func writeTarget(t *testing.T, w Kind, in *Input, spec Spec) (string, []Artifact) {
	t.Helper()
	dir := t.TempDir()
	arts, err := w.Write(context.Background(), in, spec, dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, arts
}

func TestTarTarget(t *testing.T) {
	// Past 32 MiB, so that gzip and zstd both compress in parallel.
	big := tarLayer(t, "run", dir("data"), file("data/big", string(text(1, 34<<20))))
	in := &Input{Layers: append(chain(t), big)}
	want := squash(t, in.Layers, nil)

	for _, tc := range []struct {
		compression, file, mediaType string
		decompress                   func(io.Reader) (io.Reader, error)
	}{
		{"gzip", "rootfs.tar.gz", "application/vnd.oci.image.layer.v1.tar+gzip",
			func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
		{"", "rootfs.tar.gz", "application/vnd.oci.image.layer.v1.tar+gzip",
			func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
		{"zstd", "rootfs.tar.zst", "application/vnd.oci.image.layer.v1.tar+zstd",
			func(r io.Reader) (io.Reader, error) { d, err := zstd.NewReader(r); return d, err }},
		{"none", "rootfs.tar", "application/vnd.oci.image.layer.v1.tar",
			func(r io.Reader) (io.Reader, error) { return r, nil }},
	} {
		name := tc.compression
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			spec := &TarSpec{Compression: tc.compression}
			var outputs [][]byte
			for range 2 {
				dir, arts := writeTarget(t, Tar{}, in, spec)
				if len(arts) != 1 || arts[0] != (Artifact{Path: tc.file, MediaType: tc.mediaType}) {
					t.Fatalf("artifacts %+v, want %s (%s)", arts, tc.file, tc.mediaType)
				}
				if got := listFiles(t, dir); len(got) != 1 || got[0] != tc.file {
					t.Fatalf("files in output: %v", got)
				}
				b, err := os.ReadFile(filepath.Join(dir, tc.file))
				if err != nil {
					t.Fatal(err)
				}
				outputs = append(outputs, b)
			}
			if !bytes.Equal(outputs[0], outputs[1]) {
				t.Error("two runs gave different bytes")
			}
			r, err := tc.decompress(bytes.NewReader(outputs[0]))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatalf("decompressing: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("decompressed artifact (%d bytes) differs from the squashed tree (%d bytes)", len(got), len(want))
			}
		})
	}
}

func TestTarTargetErrors(t *testing.T) {
	in := &Input{Layers: chain(t)}
	dir := t.TempDir()
	if _, err := (Tar{}).Write(context.Background(), in, &TarSpec{Compression: "bzip2"}, dir); err == nil ||
		!strings.Contains(err.Error(), `unknown compression "bzip2"`) {
		t.Errorf("bzip2: %v", err)
	}
	if _, err := (Tar{}).Write(context.Background(), in, &QCOW2Spec{DiskSpec: DiskSpec{}}, dir); err == nil {
		t.Error("a qcow2 spec was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Tar{}).Write(ctx, in, &TarSpec{Compression: "zstd"}, dir); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if got := listFiles(t, dir); len(got) != 0 {
		t.Errorf("failed writes left %v", got)
	}
}

func TestFor(t *testing.T) {
	for kind, want := range map[string]Kind{"tar": Tar{}, "oci": OCI{}, "raw": Raw{}, "qcow2": QCOW2{}, "netboot": Netboot{}, "openstack": OpenStack{}, "opennebula": OpenNebula{}} {
		if w, err := For(kind); err != nil || w != want {
			t.Errorf("For(%q) = %v, %v", kind, w, err)
		}
	}
	if _, err := For("qcow2"); err != nil {
		t.Errorf("For(qcow2): %v", err)
	}
	for _, kind := range []string{"nosuch", ""} {
		if _, err := For(kind); err == nil {
			t.Errorf("For(%q) gave a writer", kind)
		}
	}
}
