package remote

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/internal/registrytest"
	"github.com/fgimg/fgimg/internal/s3test"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/registry/remote/auth"
)

func openStore(t *testing.T) *cache.Store {
	t.Helper()
	s, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// putStage stores a record of kind with one output per body.
func putStage(t *testing.T, s *cache.Store, seed string, bodies ...[]byte) cache.Record {
	t.Helper()
	rec := cache.Record{Digest: digest.FromString(seed), Kind: "packages", Inputs: []digest.Digest{digest.FromString(seed + "-in")},
		Info: map[string]string{"k": "v"}}
	for i, b := range bodies {
		d, err := s.PutBlob(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		rec.Outputs = append(rec.Outputs, cache.Output{Name: "out" + string(rune('a'+i)), Digest: d.Digest, Size: d.Size})
	}
	if err := s.PutRecord(rec); err != nil {
		t.Fatal(err)
	}
	rec, _ = s.Record(rec.Digest)
	return rec
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func openRemote(t *testing.T, addr string, creds CredentialStore) *Remote {
	t.Helper()
	if creds == nil {
		creds = staticCredential{}
	}
	r, err := Open(addr+"/fgimg", Options{Credentials: creds})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Runner A pushes a stage and a target with a referrer; the registry's
// garbage collector runs; runner B finds both in one batched lookup,
// pulls them into its empty cache byte for byte, and lists the
// referrer.
func TestPushGCPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	ctx := context.Background()
	a, b := openStore(t), openStore(t)
	stage := putStage(t, a, "stage", random(t, 3<<20))
	target := putStage(t, a, "target", random(t, 1<<20), []byte(`{"spdx":1}`))
	ra := openRemote(t, reg.Addr, nil)
	sk := Key{Namespace: "public", Kind: Stage, Digest: stage.Digest}
	tk := Key{Namespace: "users/alice", Kind: Target, Digest: target.Digest}
	if _, err := ra.Push(ctx, a, sk, nil); err != nil {
		t.Fatal(err)
	}
	tdesc, err := ra.Push(ctx, a, tk, map[string]string{AnnotationTargets: "disk"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ra.PushReferrer(ctx, tk, ArtifactTargetManifest, "manifest.json", []byte(`{"target":"disk"}`)); err != nil {
		t.Fatal(err)
	}
	// Pushing again sends nothing new and gives the same manifest.
	if d2, err := ra.Push(ctx, a, tk, map[string]string{AnnotationTargets: "disk"}); err != nil || d2.Digest != tdesc.Digest {
		t.Fatalf("second push: %v, %s != %s", err, d2.Digest, tdesc.Digest)
	}
	out := reg.GC()
	if !strings.Contains(out, "blobs marked") {
		t.Logf("gc output: %s", out)
	}

	rb := openRemote(t, reg.Addr, nil)
	missing := Key{Namespace: "public", Kind: Stage, Digest: digest.FromString("never built")}
	found, err := rb.Lookup(ctx, []Key{sk, tk, missing})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := found[missing]; len(found) != 2 || ok || found[tk].Digest != tdesc.Digest {
		t.Fatalf("lookup found %v, want the stage and the target", found)
	}
	for _, k := range []Key{sk, tk} {
		o, err := rb.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if k == tk && o.Manifest.Annotations[AnnotationTargets] != "disk" {
			t.Errorf("target annotation %q", o.Manifest.Annotations[AnnotationTargets])
		}
		if _, err := rb.Pull(ctx, b, o); err != nil {
			t.Fatal(err)
		}
		if !b.Has(k.Digest) {
			t.Fatalf("%s not in B's cache after the pull", k)
		}
		want, _ := a.Record(k.Digest)
		got, _ := b.Record(k.Digest)
		for i, o := range want.Outputs {
			if got.Outputs[i] != o {
				t.Errorf("%s output %d: %+v, want %+v", k, i, got.Outputs[i], o)
			}
		}
		if got.Inputs[0] != want.Inputs[0] || got.Info["k"] != "v" {
			t.Errorf("%s record %+v", k, got)
		}
	}
	refs, err := rb.Referrers(ctx, tk, ArtifactTargetManifest)
	if err != nil || len(refs) != 1 {
		t.Fatalf("referrers after gc: %v, %d", err, len(refs))
	}
	data, err := rb.ReadReferrer(ctx, tk, refs[0])
	if err != nil || string(data) != `{"target":"disk"}` {
		t.Fatalf("referrer content %q: %v", data, err)
	}
}

// pushedStage starts a registry and pushes a stage of one layer of
// size bytes from a cache; it returns the registry, the remote, the
// stage's record and key, and an empty second cache.
func pushedStage(t *testing.T, size int) (*registrytest.Registry, *Remote, cache.Record, Key, *cache.Store) {
	t.Helper()
	reg := registrytest.Start(t, registrytest.Options{})
	a := openStore(t)
	rec := putStage(t, a, "stage", random(t, size))
	r := openRemote(t, reg.Addr, nil)
	k := Key{Namespace: "public", Kind: Stage, Digest: rec.Digest}
	if _, err := r.Push(context.Background(), a, k, nil); err != nil {
		t.Fatal(err)
	}
	return reg, r, rec, k, openStore(t)
}

// A blob corrupted on the registry's disk is refused: nothing is
// stored, and the error says it is corrupt.
func TestCorruptBlobRefused(t *testing.T) {
	ctx := context.Background()
	reg, r, rec, k, b := pushedStage(t, 1<<20)
	reg.Corrupt(rec.Outputs[0].Digest)
	o, err := r.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Pull(ctx, b, o)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("pull of a corrupt blob: %v, want ErrCorrupt", err)
	}
	if b.HasBlob(rec.Outputs[0].Digest) || b.Has(rec.Digest) {
		t.Fatal("the corrupt blob or its record was stored")
	}
}

// A registry with htpasswd: the right account from a docker config.json
// pushes; a wrong password gives an error naming the registry, without
// the password.
func TestAuth(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	ctx := context.Background()
	a := openStore(t)
	rec := putStage(t, a, "stage", random(t, 1000))
	k := Key{Namespace: "public", Kind: Stage, Digest: rec.Digest}

	t.Setenv("DOCKER_CONFIG", reg.DockerConfig(t.TempDir(), reg.Password))
	creds, err := DefaultCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openRemote(t, reg.Addr, creds).Push(ctx, a, k, nil); err != nil {
		t.Fatalf("push with the right credentials: %v", err)
	}

	bad := "wrong-password-42"
	for name, c := range map[string]CredentialStore{
		"wrong password": staticCredential{auth.Credential{Username: reg.User, Password: bad}},
		"none":           staticCredential{},
	} {
		_, err := openRemote(t, reg.Addr, c).Get(ctx, k)
		if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "registry "+reg.Addr) {
			t.Errorf("%s: %v, want an authentication error naming %s", name, err, reg.Addr)
		}
		if err != nil && strings.Contains(err.Error(), bad) {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
}

// flaky is a back end whose blob streams break: after breakAt bytes a
// read fails (break) or the stream ends (truncate), on the first fetch
// or on every one.
type flaky struct {
	Backend
	breakAt  int64
	truncate bool
	always   bool
	fetches  atomic.Int32
}

func (f *flaky) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := f.Backend.Fetch(ctx, desc)
	if err != nil || desc.MediaType != MediaTypeBlob {
		return rc, err
	}
	if n := f.fetches.Add(1); n > 1 && !f.always {
		return rc, nil
	}
	if f.truncate {
		return struct {
			io.Reader
			io.Closer
		}{io.LimitReader(rc, f.breakAt), rc}, nil
	}
	return &breaking{ReadCloser: rc, left: f.breakAt}, nil
}

// breaking fails one read after left bytes, as a dropped connection;
// it seeks (a range request) when the stream beneath can.
type breaking struct {
	io.ReadCloser
	left   int64
	broken bool
}

func (b *breaking) Read(p []byte) (int, error) {
	if !b.broken && b.left <= 0 {
		b.broken = true
		return 0, io.ErrUnexpectedEOF
	}
	if !b.broken && int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *breaking) Seek(off int64, whence int) (int64, error) {
	return b.ReadCloser.(io.Seeker).Seek(off, whence)
}

// A pull whose connection breaks resumes where it stopped (one fetch,
// a range request after it); a truncated blob is fetched again; a blob
// truncated every time is refused and nothing is stored.
func TestPullResumesAndRefusesTruncation(t *testing.T) {
	ctx := context.Background()
	_, r, rec, k, _ := pushedStage(t, 8<<20)
	real, _ := r.Repo("public")
	layer := rec.Outputs[0].Digest
	for _, c := range []struct {
		name        string
		f           *flaky
		fetches     int32
		wantCorrupt bool
	}{
		{"broken connection resumed", &flaky{breakAt: 3 << 20}, 1, false},
		{"truncated once, fetched again", &flaky{breakAt: 3 << 20, truncate: true}, 2, false},
		{"truncated every time", &flaky{breakAt: 3 << 20, truncate: true, always: true}, 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.f.Backend = real
			r.mu.Lock()
			r.repos["public"] = c.f
			r.mu.Unlock()
			b := openStore(t)
			o, err := r.Get(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			_, err = r.Pull(ctx, b, o)
			if c.wantCorrupt {
				if !errors.Is(err, ErrCorrupt) || b.HasBlob(layer) || b.Has(rec.Digest) {
					t.Fatalf("pull: %v; blob stored %v", err, b.HasBlob(layer))
				}
			} else if err != nil || !b.Has(rec.Digest) {
				t.Fatalf("pull: %v", err)
			}
			if got := c.f.fetches.Load(); got != c.fetches {
				t.Errorf("%d fetches, want %d", got, c.fetches)
			}
		})
	}
}

func TestParseRef(t *testing.T) {
	for in, want := range map[string]Ref{
		"localhost:5000/fgimg":         {Scheme: "oci", Host: "localhost:5000", Path: "fgimg"},
		"docker://ghcr.io/acme/images": {Scheme: "oci", Host: "ghcr.io", Path: "acme/images"},
		"s3://bucket/some/prefix/":     {Scheme: "s3", Host: "bucket", Path: "some/prefix"},
	} {
		got, err := ParseRef(in)
		if err != nil || got != want {
			t.Errorf("ParseRef(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "localhost:5000/Fgimg", "ghcr.io/acme:latest", "http://x/y", "s3:///x"} {
		if _, err := ParseRef(in); err == nil {
			t.Errorf("ParseRef(%q) accepted", in)
		}
	}
	if !isLoopback("127.0.0.1:5000") || !isLoopback("localhost") || !isLoopback("[::1]:80") || isLoopback("registry.example.org:5000") {
		t.Error("isLoopback")
	}
}

func TestNamespace(t *testing.T) {
	for _, c := range [][4]string{
		{"Alice", "private", "", "users/alice"},
		{"bob", "group:HPC Team", "", "groups/hpc-team"},
		{"bob", "public", "shared/public", "shared/public"},
		{"bob", "public", "", "public"},
	} {
		if got := Namespace(c[0], c[1], c[2]); got != c[3] {
			t.Errorf("Namespace(%q, %q, %q) = %q, want %q", c[0], c[1], c[2], got, c[3])
		}
	}
}

// The same layout over the S3 back end (a real versitygw server):
// s3://BUCKET/PREFIX is dispatched to it, a stage and a target with a
// referrer (kept in the tag-schema index above the seam, since S3 has no
// referrers API) are pushed, and a second cache pulls them verified.
func TestS3BackEnd(t *testing.T) {
	s := s3test.Start(t)
	s.MakeBucket(t, "shared")
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	ctx := context.Background()
	r, err := Open("s3://shared/team/fgimg", Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := openStore(t), openStore(t)
	stage := putStage(t, a, "stage", random(t, 2<<20))
	target := putStage(t, a, "target", random(t, 1<<20))
	sk := Key{Namespace: "public", Kind: Stage, Digest: stage.Digest}
	tk := Key{Namespace: "groups/hpc", Kind: Target, Digest: target.Digest}
	for _, k := range []Key{sk, tk} {
		if _, err := r.Push(ctx, a, k, map[string]string{AnnotationTargets: "disk"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.PushReferrer(ctx, tk, ArtifactTargetManifest, "manifest.json", []byte(`{"m":1}`)); err != nil {
		t.Fatal(err)
	}
	found, err := r.Lookup(ctx, []Key{sk, tk, {Namespace: "public", Kind: Stage, Digest: digest.FromString("absent")}})
	if err != nil || len(found) != 2 {
		t.Fatalf("lookup: %v, %v", found, err)
	}
	for _, k := range []Key{sk, tk} {
		o, err := r.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Pull(ctx, b, o); err != nil || !b.Has(k.Digest) {
			t.Fatalf("pull %s: %v", k, err)
		}
	}
	refs, err := r.Referrers(ctx, tk, ArtifactTargetManifest)
	if err != nil || len(refs) != 1 {
		t.Fatalf("referrers: %v, %v", refs, err)
	}
	listed, err := r.ListTargets(ctx, nil)
	if err != nil || len(listed) != 1 || listed[0].Key != tk {
		t.Fatalf("listing: %+v, %v", listed, err)
	}
}
