package s3client_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/s3client"
	"github.com/fgimg/fgimg/internal/s3test"
)

const mib = 1 << 20

// counter is an HTTP transport that counts the requests by kind, as the
// server sees them.
type counter struct {
	mu    sync.Mutex
	n     map[string]int
	delay time.Duration // after each part sent, said on stdout
}

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	kind := r.Method
	q := r.URL.Query()
	switch {
	case q.Has("partNumber"):
		kind = "UploadPart"
	case r.Method == http.MethodPut && r.Header.Get("X-Amz-Copy-Source") != "":
		kind = "CopyObject"
	case r.Method == http.MethodPut:
		kind = "PutObject"
	case r.Method == http.MethodPost && q.Has("uploads"):
		kind = "CreateMultipartUpload"
	case r.Method == http.MethodPost && q.Has("uploadId"):
		kind = "CompleteMultipartUpload"
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[kind]++
	c.mu.Unlock()
	if kind == "UploadPart" && c.delay > 0 {
		fmt.Println("part")
		time.Sleep(c.delay)
	}
	return resp, err
}

func (c *counter) get(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[kind]
}

func client(t testing.TB, cfg s3client.Config, cnt *counter) *s3client.Client {
	t.Helper()
	if cnt != nil {
		cfg.HTTPClient = &http.Client{Transport: cnt}
	}
	c, err := s3client.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// start starts versitygw with a bucket and returns the configuration of
// a client sending 5 MiB parts, S3's smallest.
func start(t *testing.T, bucket string) (*s3test.Server, s3client.Config) {
	t.Helper()
	s := s3test.Start(t)
	s.MakeBucket(t, bucket)
	cfg := s.Config()
	cfg.PartSize = 5 * mib
	return s, cfg
}

func randomFile(t testing.TB, size int) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

func readAll(t *testing.T, c *s3client.Client, bucket, key string) []byte {
	t.Helper()
	r, _, err := c.Open(context.Background(), bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestUploadMultipart uploads a file of several parts with metadata,
// reads it back verified, then a second upload with the same digest sends
// nothing and one with another digest sends it all again.
func TestUploadMultipart(t *testing.T) {
	_, cfg := start(t, "images")
	ctx := context.Background()
	cnt := &counter{}
	c := client(t, cfg, cnt)
	p, data := randomFile(t, 23*mib)
	meta := map[string]string{s3client.DigestKey: "sha256:1111", "name": "hadoop"}
	var last int64
	res, err := c.UploadFile(ctx, "images", "a/disk.raw", p, meta, func(n int64) { last = n })
	if err != nil {
		t.Fatal(err)
	}
	if res.Parts != 5 || res.Sent != 5 || res.Resumed != 0 || res.Bytes != int64(len(data)) || last != int64(len(data)) {
		t.Fatalf("upload: %+v, progress ended at %d", res, last)
	}
	if n := cnt.get("UploadPart"); n != 5 {
		t.Fatalf("%d parts sent, want 5", n)
	}
	o, found, err := c.Stat(ctx, "images", "a/disk.raw")
	if err != nil || !found || o.Size != int64(len(data)) || o.Metadata[s3client.DigestKey] != "sha256:1111" || o.Metadata["name"] != "hadoop" {
		t.Fatalf("Stat: %+v found %v err %v", o, found, err)
	}
	r, _, err := c.OpenVerified(ctx, "images", "a/disk.raw", digest.FromBytes(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("verified read: %d bytes, err %v", len(got), err)
	}

	before := map[string]int{}
	for _, k := range []string{"UploadPart", "PutObject", "CreateMultipartUpload"} {
		before[k] = cnt.get(k)
	}
	res, err = c.UploadFile(ctx, "images", "a/disk.raw", p, meta, nil)
	if err != nil || !res.Skipped {
		t.Fatalf("second upload: %+v, %v", res, err)
	}
	for _, k := range []string{"UploadPart", "PutObject", "CreateMultipartUpload"} {
		if cnt.get(k) != before[k] {
			t.Fatalf("second upload with the same digest sent %s", k)
		}
	}

	meta[s3client.DigestKey] = "sha256:2222"
	res, err = c.UploadFile(ctx, "images", "a/disk.raw", p, meta, nil)
	if err != nil || res.Skipped || res.Sent != 5 {
		t.Fatalf("upload with a new digest: %+v, %v", res, err)
	}
	if o, _, _ := c.Stat(ctx, "images", "a/disk.raw"); o.Metadata[s3client.DigestKey] != "sha256:2222" {
		t.Fatalf("metadata after the new upload: %v", o.Metadata)
	}
}

// TestUploadSmall: a file below the part size is one PutObject, with its
// metadata, also skipped the second time.
func TestUploadSmall(t *testing.T) {
	s := s3test.Start(t)
	s.MakeBucket(t, "images")
	ctx := context.Background()
	cnt := &counter{}
	c := client(t, s.Config(), cnt)
	p, data := randomFile(t, 1000)
	meta := map[string]string{s3client.DigestKey: "sha256:abcd"}
	for i := range 2 {
		res, err := c.UploadFile(ctx, "images", "k", p, meta, nil)
		if err != nil || res.Skipped != (i == 1) {
			t.Fatalf("upload %d: %+v %v", i, res, err)
		}
	}
	if cnt.get("PutObject") != 1 || cnt.get("CreateMultipartUpload") != 0 {
		t.Fatalf("requests: %v", cnt.n)
	}
	if got := readAll(t, c, "images", "k"); !bytes.Equal(got, data) {
		t.Fatal("object differs from the file")
	}
}

// TestOpenVerifiedCorrupt: an object changed or truncated on the server's
// disk is refused, with ErrCorrupt, never passed as good.
func TestOpenVerifiedCorrupt(t *testing.T) {
	s := s3test.Start(t)
	s.MakeBucket(t, "images")
	ctx := context.Background()
	c := s.Client(t)
	p, data := randomFile(t, 100000)
	if err := c.Upload(ctx, "images", "k", p, nil, nil); err != nil {
		t.Fatal(err)
	}
	onDisk := filepath.Join(s.Dir, "images", "k")
	d := digest.FromBytes(data)
	read := func() error {
		r, _, err := c.OpenVerified(ctx, "images", "k", d, int64(len(data)))
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(io.Discard, r)
		return err
	}
	if err := read(); err != nil {
		t.Fatalf("intact object: %v", err)
	}
	bad := bytes.Clone(data)
	bad[5000] ^= 1
	os.WriteFile(onDisk, bad, 0o644)
	if err := read(); !errors.Is(err, s3client.ErrCorrupt) {
		t.Fatalf("flipped bit: %v", err)
	}
	os.WriteFile(onDisk, data[:len(data)-10], 0o644)
	if err := read(); !errors.Is(err, s3client.ErrCorrupt) {
		t.Fatalf("truncated: %v", err)
	}
	// Without a known size the digest still catches it.
	r, _, err := c.OpenVerified(ctx, "images", "k", d, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); !errors.Is(err, s3client.ErrCorrupt) {
		t.Fatalf("truncated, size unknown: %v", err)
	}
	r.Close()
}

// TestUploadReader: a stream is stored only when it has its digest and
// size; otherwise nothing appears under the key and no upload is left.
func TestUploadReader(t *testing.T) {
	_, cfg := start(t, "blobs")
	ctx := context.Background()
	c := client(t, cfg, nil)
	_, data := randomFile(t, 12*mib)
	d := digest.FromBytes(data)
	for _, tc := range []struct {
		name string
		body []byte
		size int64
	}{
		{"corrupt", append(bytes.Clone(data[:100]), append([]byte{data[100] ^ 1}, data[101:]...)...), int64(len(data))},
		{"short", data[:len(data)-1], int64(len(data))},
		{"long", append(bytes.Clone(data), 'x'), int64(len(data))},
		{"small corrupt", []byte("hello"), 5},
	} {
		err := c.UploadReader(ctx, "blobs", "x", bytes.NewReader(tc.body), tc.size, d, nil)
		if !errors.Is(err, s3client.ErrCorrupt) {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if _, found, _ := c.Stat(ctx, "blobs", "x"); found {
			t.Fatalf("%s: an object appeared", tc.name)
		}
		if ups, _ := c.S3().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws("blobs")}); len(ups.Uploads) != 0 {
			t.Fatalf("%s: an upload was left: %s", tc.name, *ups.Uploads[0].UploadId)
		}
	}
	ups, err := c.S3().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws("blobs")})
	if err != nil || len(ups.Uploads) != 0 {
		t.Fatalf("uploads left behind: %v %v", ups, err)
	}
	if err := c.UploadReader(ctx, "blobs", "x", bytes.NewReader(data), int64(len(data)), d, nil); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, c, "blobs", "x"); !bytes.Equal(got, data) {
		t.Fatal("stored stream differs")
	}
}

func aws(s string) *string { return &s }

// TestWrongCredentials: the error says the credentials were refused and
// names the server.
func TestWrongCredentials(t *testing.T) {
	s := s3test.Start(t)
	s.MakeBucket(t, "images")
	cfg := s.Config()
	cfg.SecretKey = "wrong"
	c := client(t, cfg, nil)
	p, _ := randomFile(t, 10)
	err := c.Upload(context.Background(), "images", "k", p, nil, nil)
	if !errors.Is(err, s3client.ErrAuth) || !strings.Contains(err.Error(), s.Endpoint) || !strings.Contains(err.Error(), "credentials") {
		t.Fatalf("error: %v", err)
	}
}

// childEnv carries the resumable upload test's child its job.
const childEnv = "FGIMG_S3CLIENT_TEST_CHILD"

type childJob struct {
	Config   s3client.Config
	Path     string
	Meta     map[string]string
	Interval time.Duration
}

// TestUploadChild is the process TestUploadResumesAfterKill kills: it
// uploads slowly, one part at a time.
func TestUploadChild(t *testing.T) {
	js := os.Getenv(childEnv)
	if js == "" {
		return // only as TestUploadResumesAfterKill's child
	}
	var job childJob
	if err := json.Unmarshal([]byte(js), &job); err != nil {
		t.Fatal(err)
	}
	c := client(t, job.Config, &counter{delay: job.Interval})
	err := c.Upload(context.Background(), "images", "big", job.Path, job.Meta, nil)
	t.Fatalf("the upload should have been killed; it ended: %v", err)
}

// TestUploadResumesAfterKill kills a process uploading a file part by part,
// then uploads again: the unfinished upload is found on the server, its
// parts verified against the file, and only the rest are sent; a part
// whose bytes changed in the file meanwhile is sent again. The object is
// byte-identical and carries its metadata; nothing was visible under the
// key in between.
func TestUploadResumesAfterKill(t *testing.T) {
	_, cfg := start(t, "images")
	ctx := context.Background()
	cfg.Concurrency = 1
	p, data := randomFile(t, 48*mib) // 10 parts
	meta := map[string]string{s3client.DigestKey: "sha256:feed"}
	js, _ := json.Marshal(childJob{Config: cfg, Path: p, Meta: meta, Interval: time.Second})
	cmd := exec.Command(os.Args[0], "-test.run", "^TestUploadChild$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child says "part" when a part has arrived and it waits a
	// second before the next: it is killed in that second, no part
	// half-sent.
	sc := bufio.NewScanner(stdout)
	sent := 0
	for sent < 3 && sc.Scan() {
		if sc.Text() == "part" {
			sent++
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if sent < 3 {
		t.Fatalf("the child ended after %d parts: %s", sent, errOut.String())
	}
	c := client(t, cfg, nil)
	parts := countParts(t, c, "images", "big")
	if _, found, _ := c.Stat(ctx, "images", "big"); found {
		t.Fatal("a half-uploaded object is visible under its key")
	}
	if parts >= 10 {
		t.Fatalf("the child sent all %d parts before it was killed", parts)
	}

	// The first part changes in the file: it must be sent again.
	data[10] ^= 0xff
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	cnt := &counter{}
	cfg.Concurrency = 4
	c2 := client(t, cfg, cnt)
	res, err := c2.UploadFile(ctx, "images", "big", p, meta, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantSent := 10 - parts + 1
	if res.Resumed != parts-1 || res.Sent != wantSent || cnt.get("UploadPart") != wantSent || cnt.get("CreateMultipartUpload") != 0 {
		t.Fatalf("resumed upload after %d parts: %+v, requests %v", parts, res, cnt.n)
	}
	if got := readAll(t, c, "images", "big"); !bytes.Equal(got, data) {
		t.Fatal("the resumed object differs from the file")
	}
	if o, _, _ := c.Stat(ctx, "images", "big"); o.Metadata[s3client.DigestKey] != "sha256:feed" {
		t.Fatalf("metadata: %v", o.Metadata)
	}
	ups, err := c.S3().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws("images")})
	if err != nil || len(ups.Uploads) != 0 {
		t.Fatalf("uploads left: %+v %v", ups.Uploads, err)
	}
}

// TestResumeWithOtherMetadata: an upload begun with other metadata is
// resumed and the object ends with the metadata asked for now.
func TestResumeWithOtherMetadata(t *testing.T) {
	_, cfg := start(t, "images")
	ctx := context.Background()
	c := client(t, cfg, nil)
	p, data := randomFile(t, 11*mib)
	up, err := c.S3().CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws("images"), Key: aws("k"),
		Metadata: map[string]string{s3client.DigestKey: "sha256:old"}})
	if err != nil {
		t.Fatal(err)
	}
	n := int32(1)
	if _, err := c.S3().UploadPart(ctx, &s3.UploadPartInput{Bucket: aws("images"), Key: aws("k"), UploadId: up.UploadId,
		PartNumber: &n, Body: bytes.NewReader(data[:5*mib])}); err != nil {
		t.Fatal(err)
	}
	res, err := c.UploadFile(ctx, "images", "k", p, map[string]string{s3client.DigestKey: "sha256:new"}, nil)
	if err != nil || res.Resumed != 1 || res.Sent != 2 {
		t.Fatalf("%+v %v", res, err)
	}
	o, _, _ := c.Stat(ctx, "images", "k")
	if o.Metadata[s3client.DigestKey] != "sha256:new" {
		t.Fatalf("metadata %v", o.Metadata)
	}
	if got := readAll(t, c, "images", "k"); !bytes.Equal(got, data) {
		t.Fatal("object differs")
	}
}

func countParts(t *testing.T, c *s3client.Client, bucket, key string) int {
	t.Helper()
	ctx := context.Background()
	ups, err := c.S3().ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: &bucket})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range ups.Uploads {
		if *u.Key == key {
			ps, err := c.S3().ListParts(ctx, &s3.ListPartsInput{Bucket: &bucket, Key: &key, UploadId: u.UploadId})
			if err != nil {
				t.Fatal(err)
			}
			return len(ps.Parts)
		}
	}
	return 0
}

// failingReader gives n bytes of r, then fails as a source that went away.
type failingReader struct {
	r io.Reader
	n int
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("the source went away")
	}
	p = p[:min(len(p), f.n)]
	n, err := f.r.Read(p)
	f.n -= n
	return n, err
}

// TestUploadReaderResumes: a stream that fails after two parts leaves its
// upload; pushing the same content again reads the stream but sends only
// the parts the server does not hold.
func TestUploadReaderResumes(t *testing.T) {
	_, cfg := start(t, "blobs")
	ctx := context.Background()
	cnt := &counter{}
	c := client(t, cfg, cnt)
	_, data := randomFile(t, 22*mib) // 5 parts
	d := digest.FromBytes(data)
	err := c.UploadReader(ctx, "blobs", "x", &failingReader{bytes.NewReader(data), 11 * mib}, int64(len(data)), d, nil)
	if err == nil || !strings.Contains(err.Error(), "went away") {
		t.Fatalf("failing stream: %v", err)
	}
	if n := countParts(t, c, "blobs", "x"); n != 2 {
		t.Fatalf("%d parts on the server after the failure, want 2", n)
	}
	before := cnt.get("UploadPart")
	if err := c.UploadReader(ctx, "blobs", "x", bytes.NewReader(data), int64(len(data)), d, nil); err != nil {
		t.Fatal(err)
	}
	if sent := cnt.get("UploadPart") - before; sent != 3 {
		t.Fatalf("the resumed upload sent %d parts, want 3", sent)
	}
	if got := readAll(t, c, "blobs", "x"); !bytes.Equal(got, data) {
		t.Fatal("stored stream differs")
	}
}

// breaking is a transport whose first GET response breaks after n bytes,
// as a dropped connection does; it records the Range of each GET.
type breaking struct {
	mu     sync.Mutex
	n      int64
	ranges []string
}

func (b *breaking) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err != nil || r.Method != http.MethodGet {
		return resp, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ranges = append(b.ranges, r.Header.Get("Range"))
	if len(b.ranges) == 1 {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(io.LimitReader(resp.Body, b.n), errReader{}), resp.Body}
	}
	return resp, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset by peer") }

// TestOpenVerifiedResumes: a download whose connection breaks goes on
// from where it broke, and the whole is still verified.
func TestOpenVerifiedResumes(t *testing.T) {
	s, cfg := start(t, "images")
	ctx := context.Background()
	p, data := randomFile(t, 3*mib)
	if err := s.Client(t).Upload(ctx, "images", "k", p, nil, nil); err != nil {
		t.Fatal(err)
	}
	br := &breaking{n: mib}
	cfg.HTTPClient = &http.Client{Transport: br}
	c := client(t, cfg, nil)
	r, _, err := c.OpenVerified(ctx, "images", "k", digest.FromBytes(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read %d bytes, %v", len(got), err)
	}
	if fmt.Sprint(br.ranges) != fmt.Sprintf("[ bytes=%d-]", mib) {
		t.Fatalf("GETs with ranges %q", br.ranges)
	}
}
