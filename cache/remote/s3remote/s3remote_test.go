package s3remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/memory"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"

	"github.com/fgimg/fgimg/cache/remote/s3remote"
	"github.com/fgimg/fgimg/internal/s3client"
	"github.com/fgimg/fgimg/internal/s3test"
)

// The two interfaces of cache/remote's Backend, and oras's Deleter.
var (
	_ oras.Target         = (*s3remote.Repository)(nil)
	_ registry.TagLister  = (*s3remote.Repository)(nil)
	_ content.Deleter     = (*s3remote.Repository)(nil)
	_ oras.ReadOnlyTarget = (*s3remote.Repository)(nil)
)

// puts counts the requests that write (PUT, POST) as the server sees them.
type puts struct {
	mu sync.Mutex
	n  int
}

func (p *puts) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut || r.Method == http.MethodPost {
		p.mu.Lock()
		p.n++
		p.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (p *puts) get() int { p.mu.Lock(); defer p.mu.Unlock(); return p.n }

type fixture struct {
	s    *s3test.Server
	root *s3remote.Root
	puts *puts
}

func start(t *testing.T) *fixture {
	s := s3test.Start(t)
	s.MakeBucket(t, "shared")
	cfg := s.Config()
	cfg.PartSize = 5 << 20
	p := &puts{}
	cfg.HTTPClient = &http.Client{Transport: p}
	c, err := s3client.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{s: s, root: s3remote.NewRoot(c, "shared", "fgimg/cache"), puts: p}
}

func (f *fixture) repo(t *testing.T, name string) *s3remote.Repository {
	r, err := f.root.Repository(name)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// artifact packs a stage-like artifact into a memory store: a config, a
// layer of size bytes and a manifest tagged tag.
func artifact(t *testing.T, size int, tag string) (*memory.Store, ocispec.Descriptor, []byte) {
	ctx := context.Background()
	st := memory.New()
	layer := make([]byte, size)
	rand.Read(layer)
	ld, err := oras.PushBytes(ctx, st, "application/vnd.fgimg.layer.v1.tar", layer)
	if err != nil {
		t.Fatal(err)
	}
	cd, err := oras.PushBytes(ctx, st, "application/vnd.fgimg.stage.v1+json", []byte(`{"stage":"`+tag+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	md, err := oras.PackManifest(ctx, st, oras.PackManifestVersion1_1, "application/vnd.fgimg.stage.v1",
		oras.PackManifestOptions{ConfigDescriptor: &cd, Layers: []ocispec.Descriptor{ld}})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Tag(ctx, md, tag); err != nil {
		t.Fatal(err)
	}
	return st, ld, layer
}

// TestCopyRoundTrip: oras.Copy pushes a multi-part artifact to S3 and
// copies it back into an empty store, byte for byte; a second copy
// writes nothing; the manifest resolves by tag and by digest.
func TestCopyRoundTrip(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	repo := f.repo(t, "public")
	src, ld, layer := artifact(t, 12<<20, "stage-aaaa")
	md, err := oras.Copy(ctx, src, "stage-aaaa", repo, "stage-aaaa", oras.DefaultCopyOptions)
	if err != nil {
		t.Fatal(err)
	}
	n := f.puts.get()
	if _, err := oras.Copy(ctx, src, "stage-aaaa", repo, "stage-aaaa", oras.DefaultCopyOptions); err != nil {
		t.Fatal(err)
	}
	// The tag is rewritten (one PUT, as a registry's PUT of the
	// manifest by tag would be); no blob or manifest is sent again.
	if got := f.puts.get() - n; got > 1 {
		t.Fatalf("the second copy made %d writes", got)
	}
	// The same content pushed by oras.PushBytes is skipped too.
	n = f.puts.get()
	if _, err := oras.PushBytes(ctx, repo, ld.MediaType, layer); err != nil {
		t.Fatal(err)
	}
	if f.puts.get() != n {
		t.Fatal("pushing a present blob wrote it again")
	}

	dst := memory.New()
	got, err := oras.Copy(ctx, repo, "stage-aaaa", dst, "stage-aaaa", oras.DefaultCopyOptions)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != md.Digest || got.MediaType != ocispec.MediaTypeImageManifest {
		t.Fatalf("copied back %v, pushed %v", got, md)
	}
	b, err := content.FetchAll(ctx, dst, ld)
	if err != nil || !bytes.Equal(b, layer) {
		t.Fatalf("layer copied back: %d bytes, %v", len(b), err)
	}
	byDigest, err := repo.Resolve(ctx, md.Digest.String())
	if err != nil || byDigest.Digest != md.Digest || byDigest.Size != md.Size || byDigest.MediaType != md.MediaType {
		t.Fatalf("resolve by digest: %v %v", byDigest, err)
	}
	if _, err := repo.Resolve(ctx, "stage-none"); !errors.Is(err, errdef.ErrNotFound) {
		t.Fatalf("missing tag: %v", err)
	}
	if _, err := repo.Resolve(ctx, "../x"); !errors.Is(err, errdef.ErrInvalidReference) {
		t.Fatalf("bad tag: %v", err)
	}
	// Objects are where the layout says.
	for _, k := range []string{"blobs/sha256/" + ld.Digest.Encoded(), "manifests/sha256/" + md.Digest.Encoded(), "tags/stage-aaaa"} {
		if _, err := os.Stat(filepath.Join(f.s.Dir, "shared", "fgimg/cache/public", k)); err != nil {
			t.Errorf("layout: %v", err)
		}
	}
}

// TestTags: oras.TagN tags a manifest many times; registry.Tags lists
// them sorted, and paging after `last` goes on from there; tagging a
// missing manifest is refused.
func TestTags(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	repo := f.repo(t, "users/alice")
	src, _, _ := artifact(t, 100, "v1")
	if _, err := oras.Copy(ctx, src, "v1", repo, "v1", oras.DefaultCopyOptions); err != nil {
		t.Fatal(err)
	}
	names := []string{"zeta", "alpha", "mid-1", "Mid_2", "b.3"}
	if _, err := oras.TagN(ctx, repo, "v1", names, oras.DefaultTagNOptions); err != nil {
		t.Fatal(err)
	}
	all, err := registry.Tags(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"Mid_2", "alpha", "b.3", "mid-1", "v1", "zeta"}
	if fmt.Sprint(all) != fmt.Sprint(want) {
		t.Fatalf("tags %v, want %v", all, want)
	}
	var after []string
	if err := repo.Tags(ctx, "b.3", func(p []string) error { after = append(after, p...); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(after) != "[mid-1 v1 zeta]" {
		t.Fatalf("tags after b.3: %v", after)
	}
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("nothing"), Size: 7}
	if err := repo.Tag(ctx, missing, "ghost"); !errors.Is(err, errdef.ErrNotFound) {
		t.Fatalf("tagging a missing manifest: %v", err)
	}

	// Repositories lists the repositories that hold anything.
	other := f.repo(t, "public")
	if _, err := oras.Copy(ctx, src, "v1", other, "v1", oras.DefaultCopyOptions); err != nil {
		t.Fatal(err)
	}
	repos, err := f.root.Repositories(ctx)
	if err != nil || fmt.Sprint(repos) != "[public users/alice]" {
		t.Fatalf("repositories %v, %v", repos, err)
	}
	if _, err := f.root.Repository("users/tags"); err == nil {
		t.Fatal("a repository name with a layout directory was accepted")
	}
	if _, err := f.root.Repository("Up/Case"); err == nil {
		t.Fatal("an invalid repository name was accepted")
	}
}

// TestCorrupt: a blob changed or truncated on the server's disk is
// refused by Fetch and by oras.Copy, never stored in the destination;
// pushing again after Delete repairs it. A truncated object counts as
// absent, so a push repairs it too.
func TestCorrupt(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	repo := f.repo(t, "public")
	src, ld, layer := artifact(t, 200000, "s")
	if _, err := oras.Copy(ctx, src, "s", repo, "s", oras.DefaultCopyOptions); err != nil {
		t.Fatal(err)
	}
	onDisk := filepath.Join(f.s.Dir, "shared", "fgimg/cache/public/blobs/sha256", ld.Digest.Encoded())
	bad := bytes.Clone(layer)
	bad[123456] ^= 0x40
	if err := os.WriteFile(onDisk, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := memory.New()
	_, err := oras.Copy(ctx, repo, "s", dst, "s", oras.DefaultCopyOptions)
	if !errors.Is(err, content.ErrMismatchedDigest) {
		t.Fatalf("copy of a corrupt blob: %v", err)
	}
	if ok, _ := dst.Exists(ctx, ld); ok {
		t.Fatal("the corrupt blob was stored")
	}
	// Fetch alone: the reader fails at its end.
	rc, err := repo.Fetch(ctx, ld)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(io.Discard, rc)
	rc.Close()
	if !errors.Is(err, content.ErrMismatchedDigest) {
		t.Fatalf("fetch of a corrupt blob: %v", err)
	}
	// The repair: delete and push the blob itself (oras.Copy would skip
	// the graph of a manifest that is present).
	if err := repo.Delete(ctx, ld); err != nil {
		t.Fatal(err)
	}
	if err := repo.Push(ctx, ld, bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	if _, err := oras.Copy(ctx, repo, "s", memory.New(), "s", oras.DefaultCopyOptions); err != nil {
		t.Fatalf("after the repair: %v", err)
	}

	os.WriteFile(onDisk, layer[:1000], 0o644)
	if _, err := repo.Fetch(ctx, ld); !errors.Is(err, content.ErrMismatchedDigest) {
		t.Fatalf("fetch of a truncated blob: %v", err)
	}
	if ok, err := repo.Exists(ctx, ld); ok || err != nil {
		t.Fatalf("a truncated blob exists: %v %v", ok, err)
	}
	if err := repo.Push(ctx, ld, bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	if b, err := content.FetchAll(ctx, repo, ld); err != nil || !bytes.Equal(b, layer) {
		t.Fatalf("after the repair: %v", err)
	}

	// A push of content that is not what its descriptor says stores
	// nothing.
	lie := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: digest.FromString("other"), Size: 5}
	if err := repo.Push(ctx, lie, strings.NewReader("hello")); !errors.Is(err, content.ErrMismatchedDigest) {
		t.Fatalf("push of mismatched content: %v", err)
	}
	if ok, _ := repo.Exists(ctx, lie); ok {
		t.Fatal("mismatched content was stored")
	}
}

// TestWrongCredentials: a refused key is a clear error naming the server.
func TestWrongCredentials(t *testing.T) {
	f := start(t)
	cfg := f.s.Config()
	cfg.SecretKey = "not-the-secret"
	c, err := s3client.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	repo, _ := s3remote.NewRoot(c, "shared", "fgimg").Repository("public")
	src, _, _ := artifact(t, 10, "s")
	_, err = oras.Copy(context.Background(), src, "s", repo, "s", oras.DefaultCopyOptions)
	if !errors.Is(err, s3client.ErrAuth) || !strings.Contains(err.Error(), f.s.Endpoint) {
		t.Fatalf("push with a wrong key: %v", err)
	}
	_, err = registry.Tags(context.Background(), repo)
	if !errors.Is(err, s3client.ErrAuth) || !strings.Contains(err.Error(), f.s.Endpoint) {
		t.Fatalf("listing with a wrong key: %v", err)
	}
	t.Log(err)
}

// TestOpenFromEnvironment: Open reaches the server the AWS variables
// name, as `--remote s3://BUCKET/PREFIX` does for a user.
func TestOpenFromEnvironment(t *testing.T) {
	f := start(t)
	for _, kv := range f.s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	ctx := context.Background()
	root, err := s3remote.Open(ctx, "shared", "/team/cache/")
	if err != nil {
		t.Fatal(err)
	}
	if root.String() != "s3://shared/team/cache" {
		t.Fatalf("root %s", root)
	}
	repo, err := root.Repository("public")
	if err != nil {
		t.Fatal(err)
	}
	d, err := oras.PushBytes(ctx, repo, "application/octet-stream", []byte("shared"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err := content.FetchAll(ctx, repo, d); err != nil || string(b) != "shared" {
		t.Fatalf("fetched %q, %v", b, err)
	}
}

// TestServerGone: with the server stopped, pushes and lookups fail with
// an error naming it (cache/remote then builds locally and says what it
// could not share), never a false "not found".
func TestServerGone(t *testing.T) {
	f := start(t)
	ctx := context.Background()
	repo := f.repo(t, "public")
	src, ld, _ := artifact(t, 10, "s")
	f.s.Stop()
	if _, err := oras.Copy(ctx, src, "s", repo, "s", oras.DefaultCopyOptions); err == nil || !strings.Contains(err.Error(), f.s.Endpoint) {
		t.Fatalf("push to a stopped server: %v", err)
	}
	if ok, err := repo.Exists(ctx, ld); ok || err == nil || errors.Is(err, errdef.ErrNotFound) {
		t.Fatalf("exists on a stopped server: %v %v", ok, err)
	}
	if _, err := repo.Resolve(ctx, "s"); err == nil || errors.Is(err, errdef.ErrNotFound) || !strings.Contains(err.Error(), f.s.Endpoint) {
		t.Fatalf("resolve on a stopped server: %v", err)
	}
}
