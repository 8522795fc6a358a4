package s3test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// TestRoundTrip uploads a file with metadata through s3client and reads
// it back, as the registrations and the shared repository do.
func TestRoundTrip(t *testing.T) {
	s := Start(t)
	s.MakeBucket(t, "images")
	c := s.Client(t)
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "disk.raw")
	data := []byte("not really a disk image\n")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, found, err := c.Stat(ctx, "images", "a/disk.raw"); err != nil || found {
		t.Fatalf("Stat before upload: found %v, err %v", found, err)
	}
	if err := c.Upload(ctx, "images", "a/disk.raw", p, map[string]string{"fgimg-digest": "sha256:abc"}, nil); err != nil {
		t.Fatal(err)
	}
	o, found, err := c.Stat(ctx, "images", "a/disk.raw")
	if err != nil || !found || o.Size != int64(len(data)) || o.Metadata["fgimg-digest"] != "sha256:abc" {
		t.Fatalf("Stat after upload: %+v found %v err %v", o, found, err)
	}
	r, _, err := c.Open(ctx, "images", "a/disk.raw")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != string(data) {
		t.Fatalf("read back %q", got)
	}
	if err := c.Delete(ctx, "images", "a/disk.raw"); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := c.Stat(ctx, "images", "a/disk.raw"); found {
		t.Fatal("object still there after Delete")
	}
	// Wrong keys are refused: the server checks signatures.
	s.SecretKey = "wrong"
	if err := s.Client(t).Upload(ctx, "images", "b", p, nil, nil); err == nil {
		t.Fatal("upload with a wrong secret key succeeded")
	}
}
