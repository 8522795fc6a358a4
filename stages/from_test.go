package stages

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/containers/image/v5/docker"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/internal/registrytest"
	"github.com/fgimg/fgimg/internal/testkit"
)

// hostArch is the Debian name of the architecture testkit images have.
func hostArch() string {
	switch runtime.GOARCH {
	case "386":
		return "i386"
	case "ppc64le":
		return "ppc64el"
	case "arm":
		return "armhf"
	}
	return runtime.GOARCH
}

// otherArch is an architecture that is not the host's.
func otherArch() (debian, oci string) {
	if runtime.GOARCH == "arm64" {
		return "amd64", "amd64"
	}
	return "arm64", "arm64"
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Two layers: the second whites out one file of the first and adds one.
func baseLayer(t *testing.T) func(string) {
	return func(dir string) {
		write(t, filepath.Join(dir, "etc/hostname"), "one\n")
		write(t, filepath.Join(dir, "etc/removed"), "gone soon\n")
		write(t, filepath.Join(dir, "usr/bin/tool"), "#!/bin/sh\n")
		if err := os.Symlink("hostname", filepath.Join(dir, "etc/link")); err != nil {
			t.Fatal(err)
		}
	}
}

func topLayer(t *testing.T) func(string) {
	return func(dir string) {
		write(t, filepath.Join(dir, "etc/.wh.removed"), "")
		write(t, filepath.Join(dir, "etc/added"), "two\n")
	}
}

// wantTree is what baseLayer and topLayer give together.
var wantTree = map[string]string{
	"etc":          "dir",
	"etc/hostname": "file one\n",
	"etc/link":     "link hostname",
	"etc/added":    "file two\n",
	"usr":          "dir",
	"usr/bin":      "dir",
	"usr/bin/tool": "file #!/bin/sh\n",
}

// tree describes every entry beneath root.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == root {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.IsDir():
			out[rel] = "dir"
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link " + target
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = "file " + string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkTree(t *testing.T, root string, want map[string]string) {
	t.Helper()
	got := tree(t, root)
	if maps.Equal(got, want) {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("%s: got %q, want %q", k, got[k], want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %q", k, got[k])
		}
	}
}

// pull runs a from stage into a fresh root.
func pull(t *testing.T, ref, arch string) (string, Result, string, error) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	res, err := runFrom(context.Background(), &From{Ref: ref, Arch: arch}, &Env{Root: root, Log: &log, Arch: arch})
	return root, res, log.String(), err
}

func mustPull(t *testing.T, ref string) (string, Result) {
	t.Helper()
	root, res, log, err := pull(t, ref, hostArch())
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	if d := res.Info["manifest_digest"]; !strings.Contains(log, "pulled ") || !strings.Contains(log, " "+d+"\n") {
		t.Errorf("log does not say which manifest was pulled (%s):\n%s", d, log)
	}
	return root, res
}

// ociImage reads the manifest and config the testkit layout at dir
// tags "latest".
func ociImage(t *testing.T, dir string) (ocispec.Descriptor, ocispec.Manifest, []byte) {
	t.Helper()
	var index ocispec.Index
	readJSON(t, filepath.Join(dir, "index.json"), &index)
	for _, m := range index.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == "latest" {
			var man ocispec.Manifest
			readJSON(t, blobPath(dir, m.Digest), &man)
			cfg, err := os.ReadFile(blobPath(dir, man.Config.Digest))
			if err != nil {
				t.Fatal(err)
			}
			return m, man, cfg
		}
	}
	t.Fatalf("no image tagged latest in %s", dir)
	return ocispec.Descriptor{}, ocispec.Manifest{}, nil
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func blobPath(dir string, d digest.Digest) string {
	return filepath.Join(dir, "blobs", d.Algorithm().String(), d.Encoded())
}

// putBlob stores b in the layout at dir.
func putBlob(t *testing.T, dir, mediaType string, b []byte) ocispec.Descriptor {
	t.Helper()
	d := digest.FromBytes(b)
	write(t, blobPath(dir, d), string(b))
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

func putJSON(t *testing.T, dir, mediaType string, v any) ocispec.Descriptor {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return putBlob(t, dir, mediaType, b)
}

// setIndex makes index.json name one manifest or index as "latest".
func setIndex(t *testing.T, dir string, desc ocispec.Descriptor) {
	t.Helper()
	desc.Annotations = map[string]string{ocispec.AnnotationRefName: "latest"}
	putIndexFile(t, dir, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{desc},
	})
	write(t, filepath.Join(dir, ocispec.ImageLayoutFile), `{"imageLayoutVersion":"1.0.0"}`)
}

func putIndexFile(t *testing.T, dir string, index ocispec.Index) {
	t.Helper()
	b, err := json.Marshal(index)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "index.json"), string(b))
}

// rawImage writes a layout whose layers are the given uncompressed tars,
// for layers testkit would never make, and returns the layers' digests.
func rawImage(t *testing.T, dir, arch string, layers ...[]byte) []digest.Digest {
	t.Helper()
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: arch}, RootFS: ocispec.RootFS{Type: "layers"}}
	man := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	var digests []digest.Digest
	for _, l := range layers {
		desc := putBlob(t, dir, ocispec.MediaTypeImageLayer, l)
		man.Layers = append(man.Layers, desc)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, desc.Digest)
		digests = append(digests, desc.Digest)
	}
	man.Config = putJSON(t, dir, ocispec.MediaTypeImageConfig, cfg)
	setIndex(t, dir, putJSON(t, dir, ocispec.MediaTypeImageManifest, man))
	return digests
}

// tarOf makes an uncompressed tar of the given headers; regular files
// get their name as content.
func tarOf(t *testing.T, hdrs ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hdrs {
		var body []byte
		if h.Typeflag == tar.TypeReg {
			body = []byte(h.Name)
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarDir writes the files beneath dir into a tar at file.
func tarDir(t *testing.T, file, dir string) {
	t.Helper()
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	if err := tw.AddFS(os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func gunzip(t *testing.T, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testLayout(t *testing.T) (string, digest.Digest) {
	t.Helper()
	dir := t.TempDir()
	return dir, testkit.OCILayout(t, dir, baseLayer(t), topLayer(t))
}

func TestFromOCILayout(t *testing.T) {
	dir, want := testLayout(t)
	root, res := mustPull(t, "oci:"+dir+":latest")
	checkTree(t, root, wantTree)
	if got := res.Info["manifest_digest"]; got != want.String() {
		t.Errorf("manifest_digest %q, want the layout's %s", got, want)
	}
	if got := res.Info["ref"]; got != "oci:"+dir+":latest" {
		t.Errorf("ref %q", got)
	}

	// Without a tag, the layout's only image.
	root, res = mustPull(t, "oci:"+dir)
	checkTree(t, root, wantTree)
	if got := res.Info["ref"]; got != "oci:"+dir {
		t.Errorf("ref %q", got)
	}
}

func TestFromOCIArchive(t *testing.T) {
	dir, want := testLayout(t)
	file := filepath.Join(t.TempDir(), "image.oci.tar")
	tarDir(t, file, dir)
	for _, ref := range []string{"oci-archive:" + file, "oci-archive:" + file + ":latest"} {
		root, res := mustPull(t, ref)
		checkTree(t, root, wantTree)
		if got := res.Info["manifest_digest"]; got != want.String() {
			t.Errorf("%s: manifest_digest %q, want %s", ref, got, want)
		}
	}
}

// dockerArchive writes the image in the layout at dir the way docker
// save does: manifest.json, the config and uncompressed layer tars.
func dockerArchive(t *testing.T, dir string) string {
	t.Helper()
	_, man, cfg := ociImage(t, dir)
	stage := t.TempDir()
	entry := map[string]any{"Config": "config.json", "RepoTags": []string{"fgimg/test:latest"}}
	var layers []string
	for i, l := range man.Layers {
		name := fmt.Sprintf("layer%d.tar", i)
		write(t, filepath.Join(stage, name), string(gunzip(t, blobPath(dir, l.Digest))))
		layers = append(layers, name)
	}
	entry["Layers"] = layers
	b, err := json.Marshal([]any{entry})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(stage, "manifest.json"), string(b))
	write(t, filepath.Join(stage, "config.json"), string(cfg))
	file := filepath.Join(t.TempDir(), "image.docker.tar")
	tarDir(t, file, stage)
	return file
}

func TestFromDockerArchive(t *testing.T) {
	dir, _ := testLayout(t)
	file := dockerArchive(t, dir)
	for _, ref := range []string{"docker-archive:" + file, "docker-archive:" + file + ":fgimg/test:latest"} {
		root, res := mustPull(t, ref)
		checkTree(t, root, wantTree)
		if _, err := digest.Parse(res.Info["manifest_digest"]); err != nil {
			t.Errorf("%s: manifest_digest %q: %v", ref, res.Info["manifest_digest"], err)
		}
	}
}

func TestFromDir(t *testing.T) {
	layout, want := testLayout(t)
	_, man, cfg := ociImage(t, layout)
	dir := t.TempDir()
	raw, err := os.ReadFile(blobPath(layout, want))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "manifest.json"), string(raw))
	write(t, filepath.Join(dir, "version"), "Directory Transport Version: 1.1\n")
	write(t, filepath.Join(dir, man.Config.Digest.Encoded()), string(cfg))
	for _, l := range man.Layers {
		b, err := os.ReadFile(blobPath(layout, l.Digest))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, l.Digest.Encoded()), string(b))
	}
	root, res := mustPull(t, "dir:"+dir)
	checkTree(t, root, wantTree)
	if got := res.Info["manifest_digest"]; got != want.String() {
		t.Errorf("manifest_digest %q, want %s", got, want)
	}
}

// multiPlatform makes a layout whose "latest" is an index of a host
// image (etc/which says "host") and an otherArch one ("other").
func multiPlatform(t *testing.T) (dir string, host, other digest.Digest, index digest.Digest) {
	dir = t.TempDir()
	_, otherOCI := otherArch()
	images := map[string]ocispec.Descriptor{}
	for _, which := range []string{"host", "other"} {
		testkit.OCILayout(t, dir, func(d string) { write(t, filepath.Join(d, "etc/which"), which+"\n") })
		desc, man, cfgBytes := ociImage(t, dir)
		p := ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH}
		if which == "other" {
			var cfg ocispec.Image
			if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
				t.Fatal(err)
			}
			cfg.Architecture = otherOCI
			p.Architecture = otherOCI
			if otherOCI == "arm64" {
				p.Variant = "v8"
			}
			man.Config = putJSON(t, dir, ocispec.MediaTypeImageConfig, cfg)
			desc = putJSON(t, dir, ocispec.MediaTypeImageManifest, man)
		}
		desc.Annotations = nil
		desc.Platform = &p
		images[which] = desc
	}
	idx := putJSON(t, dir, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{images["other"], images["host"]},
	})
	setIndex(t, dir, idx)
	return dir, images["host"].Digest, images["other"].Digest, idx.Digest
}

func TestFromIndexPicksPlatform(t *testing.T) {
	dir, host, other, index := multiPlatform(t)
	otherDebian, otherOCI := otherArch()
	for arch, want := range map[string]struct {
		digest digest.Digest
		which  string
	}{hostArch(): {host, "host"}, otherDebian: {other, "other"}} {
		root, res, _, err := pull(t, "oci:"+dir, arch)
		if err != nil {
			t.Fatalf("arch %s: %v", arch, err)
		}
		checkTree(t, root, map[string]string{"etc": "dir", "etc/which": "file " + want.which + "\n"})
		if res.Info["manifest_digest"] != want.digest.String() || res.Info["index_digest"] != index.String() {
			t.Errorf("arch %s: recorded %v, want manifest %s from index %s", arch, res.Info, want.digest, index)
		}
	}

	_, _, _, err := pull(t, "oci:"+dir, "s390x")
	if err == nil {
		t.Fatal("pulling an s390x image from an index without one succeeded")
	}
	for _, s := range []string{"linux/s390x", "linux/" + runtime.GOARCH, "linux/" + otherOCI} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not mention %s: %v", s, err)
		}
	}
}

func TestFromSingleImageOfOtherArch(t *testing.T) {
	dir, _ := testLayout(t)
	other, _ := otherArch()
	_, _, _, err := pull(t, "oci:"+dir, other)
	if err == nil || !strings.Contains(err.Error(), "linux/"+runtime.GOARCH) {
		t.Fatalf("pulling a %s image as %s: %v", runtime.GOARCH, other, err)
	}
}

func TestFromRejectsEscapingLayers(t *testing.T) {
	outside := t.TempDir()
	cases := map[string][][]byte{
		"dotdot": {tarOf(t,
			tar.Header{Name: "ok", Typeflag: tar.TypeReg},
			tar.Header{Name: "../escape", Typeflag: tar.TypeReg},
		)},
		"symlink then write": {
			tarOf(t, tar.Header{Name: "link", Typeflag: tar.TypeSymlink, Linkname: outside}),
			tarOf(t, tar.Header{Name: "link/pwned", Typeflag: tar.TypeReg}),
		},
		"relative symlink then write": {tarOf(t,
			tar.Header{Name: "a", Typeflag: tar.TypeDir, Mode: 0o755},
			tar.Header{Name: "a/up", Typeflag: tar.TypeSymlink, Linkname: "../../.."},
			tar.Header{Name: "a/up/escape", Typeflag: tar.TypeReg},
		)},
	}
	for name, layers := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			digests := rawImage(t, dir, runtime.GOARCH, layers...)
			root, _, _, err := pull(t, "oci:"+dir, hostArch())
			if err == nil {
				t.Fatal("an escaping layer was applied")
			}
			if !errors.Is(err, layer.ErrUnsafePath) {
				t.Errorf("error does not wrap layer.ErrUnsafePath: %v", err)
			}
			bad := digests[len(digests)-1]
			if !strings.Contains(err.Error(), bad.String()) {
				t.Errorf("error does not name layer %s: %v", bad, err)
			}
			if !strings.Contains(err.Error(), "escape") && !strings.Contains(err.Error(), "pwned") {
				t.Errorf("error does not name the entry: %v", err)
			}
			// Nothing beside root in its parent, nothing in outside.
			if entries, _ := os.ReadDir(filepath.Dir(root)); len(entries) != 1 {
				t.Errorf("written beside the root: %v", entries)
			}
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Errorf("written outside the root: %v", entries)
			}
		})
	}
}

func TestFromCorruptBlob(t *testing.T) {
	for name, offset := range map[string]int{
		"gzip header":  4, // mtime: the gzip stream stays valid
		"gzip payload": -40,
	} {
		t.Run(name, func(t *testing.T) {
			dir, _ := testLayout(t)
			_, man, _ := ociImage(t, dir)
			p := blobPath(dir, man.Layers[1].Digest)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if offset < 0 {
				offset += len(b)
			}
			b[offset] ^= 0x55
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, _, err = pull(t, "oci:"+dir, hostArch())
			if !errors.Is(err, errDigestMismatch) {
				t.Fatalf("corrupt blob: want a digest mismatch, got %v", err)
			}
			if !strings.Contains(err.Error(), man.Layers[1].Digest.String()) {
				t.Errorf("error does not name the blob: %v", err)
			}
		})
	}
}

func TestFromTruncatedBlob(t *testing.T) {
	dir, _ := testLayout(t)
	_, man, _ := ociImage(t, dir)
	p := blobPath(dir, man.Layers[0].Digest)
	if err := os.Truncate(p, man.Layers[0].Size-8); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := pull(t, "oci:"+dir, hostArch()); !errors.Is(err, errDigestMismatch) {
		t.Fatalf("truncated blob: want a digest mismatch, got %v", err)
	}
}

func TestFromCorruptManifest(t *testing.T) {
	dir, want := testLayout(t)
	p := blobPath(dir, want)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, _, err = pull(t, "oci:"+dir, hostArch())
	if err == nil || !strings.Contains(err.Error(), "manifest "+want.String()+" is corrupt") {
		t.Fatalf("corrupt manifest: %v", err)
	}
}

func TestFromCancelled(t *testing.T) {
	dir, _ := testLayout(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	root := t.TempDir()
	_, err := runFrom(ctx, &From{Ref: "oci:" + dir, Arch: hostArch()}, &Env{Root: root, Log: io.Discard})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: %v", err)
	}
}

func TestFromBadReference(t *testing.T) {
	_, _, _, err := pull(t, "ftp://example.com/image", hostArch())
	if err == nil || !strings.Contains(err.Error(), `unknown transport "ftp"`) {
		t.Errorf("unknown transport: %v", err)
	}
	_, _, _, err = pull(t, "oci:"+filepath.Join(t.TempDir(), "missing"), hostArch())
	if err == nil {
		t.Error("pulling from a missing layout succeeded")
	}
}

// registry runs Debian's docker-registry on a free loopback port until
// the test ends and returns its host:port.
func registry(t *testing.T) string {
	t.Helper()
	return registrytest.Start(t, registrytest.Options{}).Addr
}

// push copies the "latest" image of the layout at dir to the registry
// with containers/image's ImageDestination API.
func push(t *testing.T, dir, ref string) digest.Digest {
	t.Helper()
	ctx := context.Background()
	desc, man, _ := ociImage(t, dir)
	r, err := docker.ParseReference("//" + ref)
	if err != nil {
		t.Fatal(err)
	}
	dest, err := r.NewImageDestination(ctx, &types.SystemContext{DockerInsecureSkipTLSVerify: types.OptionalBoolTrue})
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()
	for i, b := range append([]ocispec.Descriptor{man.Config}, man.Layers...) {
		f, err := os.Open(blobPath(dir, b.Digest))
		if err != nil {
			t.Fatal(err)
		}
		_, err = dest.PutBlob(ctx, f, types.BlobInfo{Digest: b.Digest, Size: b.Size, MediaType: b.MediaType}, none.NoCache, i == 0)
		f.Close()
		if err != nil {
			t.Fatalf("pushing blob %s: %v", b.Digest, err)
		}
	}
	raw, err := os.ReadFile(blobPath(dir, desc.Digest))
	if err != nil {
		t.Fatal(err)
	}
	if err := dest.PutManifest(ctx, raw, nil); err != nil {
		t.Fatalf("pushing manifest: %v", err)
	}
	if err := dest.Commit(ctx, nil); err != nil {
		t.Fatal(err)
	}
	return desc.Digest
}

func TestFromRegistry(t *testing.T) {
	addr := registry(t)
	dir, want := testLayout(t)
	if got := push(t, dir, addr+"/fgimg/test:v1"); got != want {
		t.Fatalf("pushed %s, want %s", got, want)
	}
	root, res := mustPull(t, "docker://"+addr+"/fgimg/test:v1")
	checkTree(t, root, wantTree)
	if got := res.Info["manifest_digest"]; got != want.String() {
		t.Errorf("manifest_digest %q, want %s", got, want)
	}
	if got, pinned := res.Info["ref"], "docker://"+addr+"/fgimg/test@"+want.String(); got != pinned {
		t.Errorf("ref %q, want %q", got, pinned)
	}

	// The pinned reference pulls the same image.
	root, _ = mustPull(t, res.Info["ref"])
	checkTree(t, root, wantTree)

	// The tag moves: the next pull records the new digest.
	dir2 := t.TempDir()
	moved := testkit.OCILayout(t, dir2, baseLayer(t))
	push(t, dir2, addr+"/fgimg/test:v1")
	root, res = mustPull(t, "docker://"+addr+"/fgimg/test:v1")
	if got := res.Info["manifest_digest"]; got != moved.String() || moved == want {
		t.Errorf("after moving the tag: manifest_digest %q, want %s", got, moved)
	}
	if got := tree(t, root)["etc/removed"]; got != "file gone soon\n" {
		t.Errorf("after moving the tag: etc/removed is %q", got)
	}

	_, _, _, err := pull(t, "docker://"+addr+"/fgimg/nosuch:v1", hostArch())
	if err == nil {
		t.Error("pulling a missing image succeeded")
	}
}
