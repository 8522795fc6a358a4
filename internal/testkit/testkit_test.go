package testkit

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/containers/image/v5/oci/layout"
	"github.com/containers/image/v5/pkg/blobinfocache/none"
	"github.com/containers/image/v5/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/layer"
)

var isRoot = os.Geteuid() == 0

func TestBusyboxRootfs(t *testing.T) {
	dir := t.TempDir()
	BusyboxRootfs(t, dir)

	if target, err := os.Readlink(filepath.Join(dir, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q (%v), want busybox", target, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "bin/busybox")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/busybox: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "tmp")); err != nil || fi.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		t.Errorf("tmp: want drwxrwxrwt, got %v %v", fi.Mode(), err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc/passwd")); err != nil || !strings.HasPrefix(string(b), "root:x:0:0:") || !strings.Contains(string(b), "\nnobody:") {
		t.Errorf("etc/passwd: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "etc/group")); err != nil || !strings.Contains(string(b), "nogroup:x:65534:") {
		t.Errorf("etc/group: %q %v", b, err)
	}
	checkSpecials(t, dir)

	// Same inputs, same bytes: a second tree archives identically.
	other := t.TempDir()
	BusyboxRootfs(t, other)
	var a, b bytes.Buffer
	if err := layer.WriteTree(&a, dir, layer.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := layer.WriteTree(&b, other, layer.Options{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two BusyboxRootfs trees archive differently")
	}

	// The specials survive a layer round trip.
	back := t.TempDir()
	if err := layer.Apply(&a, back, layer.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	checkSpecials(t, back)
}

// checkSpecials checks the hard link pair and, as root, the device node.
func checkSpecials(t *testing.T, dir string) {
	t.Helper()
	var x, y unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, HardLinkA), &x); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(filepath.Join(dir, HardLinkB), &y); err != nil {
		t.Fatal(err)
	}
	if x.Ino != y.Ino || x.Nlink != 2 {
		t.Errorf("%s and %s: want one inode with two links, got %d/%d nlink %d", HardLinkA, HardLinkB, x.Ino, y.Ino, x.Nlink)
	}
	if !isRoot {
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, DevNull), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("%s: want char 1,3, got mode %o dev %d,%d", DevNull, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
}

func TestBusyboxRootfsRuns(t *testing.T) {
	if !isRoot {
		t.Skip("chroot needs root")
	}
	dir := t.TempDir()
	BusyboxRootfs(t, dir)
	cmd := exec.Command("/bin/sh", "-c", `. /etc/os-release && echo ignored > /dev/null && echo "$ID $(id -un) $(echo hi | wc -c)"`)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/bin:/usr/bin"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("running sh in the rootfs: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "fgimg-test root 3" {
		t.Errorf("got %q, want %q", got, "fgimg-test root 3")
	}
}

func TestOCILayoutOpensWithContainersImage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	base := func(root string) {
		BusyboxRootfs(t, root)
	}
	change := func(root string) {
		if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/motd"), []byte("layer two\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "etc/.wh.hostname"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want := OCILayout(t, dir, base, change)

	ref, err := layout.NewReference(dir, "latest")
	if err != nil {
		t.Fatal(err)
	}
	img, err := ref.NewImage(ctx, nil)
	if err != nil {
		t.Fatalf("containers/image cannot open the layout: %v", err)
	}
	defer img.Close()
	raw, mediaType, err := img.Manifest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(raw) != want || mediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("manifest %s (%s), want %s (%s)", digest.FromBytes(raw), mediaType, want, ocispec.MediaTypeImageManifest)
	}
	config, err := img.OCIConfig(ctx) // checks the config blob against its digest
	if err != nil {
		t.Fatal(err)
	}
	if config.OS != "linux" || config.Architecture != runtime.GOARCH || config.RootFS.Type != "layers" || len(config.RootFS.DiffIDs) != 2 {
		t.Fatalf("config: os %q arch %q rootfs %+v", config.OS, config.Architecture, config.RootFS)
	}
	infos := img.LayerInfos()
	if len(infos) != 2 {
		t.Fatalf("want 2 layers, got %d", len(infos))
	}

	// Each layer blob is a gzip tar whose digest is its diff_id, and the
	// layers applied in order give the image's filesystem.
	src, err := ref.NewImageSource(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	root := t.TempDir()
	for i, info := range infos {
		if info.MediaType != ocispec.MediaTypeImageLayerGzip {
			t.Errorf("layer %d: media type %q", i, info.MediaType)
		}
		rc, _, err := src.GetBlob(ctx, types.BlobInfo{Digest: info.Digest, Size: info.Size}, none.NoCache)
		if err != nil {
			t.Fatal(err)
		}
		blob, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(bytes.NewReader(blob))
		if err != nil {
			t.Fatalf("layer %d is not gzip: %v", i, err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, zr); err != nil {
			t.Fatal(err)
		}
		if got := digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)); got != config.RootFS.DiffIDs[i] {
			t.Errorf("layer %d: uncompressed digest %s, diff_id %s", i, got, config.RootFS.DiffIDs[i])
		}
		if err := layer.Apply(bytes.NewReader(blob), root, layer.ApplyOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/hostname")); !os.IsNotExist(err) {
		t.Errorf("etc/hostname should be whited out by layer 2: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/motd")); err != nil || string(b) != "layer two\n" {
		t.Errorf("etc/motd: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(root, "bin/busybox")); err != nil {
		t.Errorf("layer 1 content missing: %v", err)
	}

	// Reproducible, and a second tag leaves the first in place.
	if again := OCILayout(t, t.TempDir(), base, change); again != want {
		t.Errorf("same layers gave manifest %s, then %s", want, again)
	}
	v2 := OCILayoutTag(t, dir, "v2", change)
	for tag, d := range map[string]digest.Digest{"latest": want, "v2": v2} {
		ref, err := layout.NewReference(dir, tag)
		if err != nil {
			t.Fatal(err)
		}
		src, err := ref.NewImageSource(ctx, nil)
		if err != nil {
			t.Fatalf("tag %s: %v", tag, err)
		}
		raw, _, err := src.GetManifest(ctx, nil)
		src.Close()
		if err != nil || digest.FromBytes(raw) != d {
			t.Errorf("tag %s: manifest %s (%v), want %s", tag, digest.FromBytes(raw), err, d)
		}
	}
	var index ocispec.Index
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &index); err != nil || len(index.Manifests) != 2 {
		t.Errorf("index.json: want 2 manifests, got %s (%v)", b, err)
	}
}

func TestRootfsTar(t *testing.T) {
	dir := t.TempDir()
	BusyboxRootfs(t, dir)
	path := filepath.Join(t.TempDir(), "rootfs.tar")
	RootfsTar(t, path, dir)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	seen := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not a plain tar: %v", err)
		}
		seen[h.Name] = h
	}
	if h := seen["bin/sh"]; h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "busybox" {
		t.Errorf("bin/sh: %+v", h)
	}
	if h := seen[HardLinkB]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != HardLinkA {
		t.Errorf("%s: want hard link to %s, got %+v", HardLinkB, HardLinkA, h)
	}
	if h := seen["tmp/"]; h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp/: %+v", h)
	}
	if h := seen["bin/busybox"]; h == nil || h.Size < 100000 {
		t.Errorf("bin/busybox: %+v", h)
	}
}

// recorder notes how Need ended a test, without ending this one.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(f string, a ...any) {
	r.skipped = fmt.Sprintf(f, a...)
	runtime.Goexit()
}
func (r *recorder) Fatalf(f string, a ...any) {
	r.failed = fmt.Sprintf(f, a...)
	runtime.Goexit()
}

// needs runs Need in a goroutine of its own (it ends it, as t.Skip would).
func needs(t *testing.T, names ...string) *recorder {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Need(r, names...)
	}()
	<-done
	return r
}

func TestNeedSkipsLocallyAndFailsInCI(t *testing.T) {
	t.Setenv("CI", "")
	t.Setenv(RequireTools, "")
	if r := needs(t, "sh", "/bin/sh"); r.skipped != "" || r.failed != "" {
		t.Errorf("sh is there, yet Need: skipped %q, failed %q", r.skipped, r.failed)
	}
	r := needs(t, "sh", "mkfs.ext4-no-such")
	if r.failed != "" || !strings.Contains(r.skipped, "mkfs.ext4-no-such not found") {
		t.Errorf("locally, a missing tool skips: skipped %q, failed %q", r.skipped, r.failed)
	}
	for _, env := range [][2]string{{RequireTools, "1"}, {"CI", "true"}} {
		t.Setenv(env[0], env[1])
		r := needs(t, "/no/such/file")
		if r.skipped != "" || !strings.Contains(r.failed, "/no/such/file not found") {
			t.Errorf("with %s=%s, a missing file fails: skipped %q, failed %q", env[0], env[1], r.skipped, r.failed)
		}
		t.Setenv(env[0], "")
	}
}
