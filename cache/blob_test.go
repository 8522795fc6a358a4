package cache

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/opencontainers/go-digest"
)

func TestPutBlobIsByteExact(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := randomBytes(3<<20 + 17)
	desc, err := s.PutBlob(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Descriptor{digest.FromBytes(data), int64(len(data))}); desc != want {
		t.Fatalf("PutBlob = %+v, want %+v", desc, want)
	}
	f, err := s.OpenBlob(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("blob content differs from what was written")
	}
	p, err := s.BlobPath(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if fromPath, _ := os.ReadFile(p); !bytes.Equal(fromPath, data) {
		t.Errorf("BlobPath %s does not hold the blob", p)
	}
	if !s.HasBlob(desc.Digest) {
		t.Error("HasBlob false after PutBlob")
	}
	assertEmpty(t, s.tmp)
}

func TestBlobInvisibleUntilCommit(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := randomBytes(1 << 20)
	d := digest.FromBytes(data)
	w, err := s.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(data[:len(data)/2]); err != nil {
		t.Fatal(err)
	}
	if s.HasBlob(d) {
		t.Error("HasBlob true for a half-written blob")
	}
	if _, err := s.OpenBlob(d); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenBlob of a half-written blob: %v, want not-exist", err)
	}
	assertEmpty(t, blobsDir(s))
	if _, err := w.Write(data[len(data)/2:]); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, blobsDir(s))
	desc, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != d || !s.HasBlob(d) {
		t.Errorf("after Commit: %v, HasBlob %v; want %s present", desc, s.HasBlob(d), d)
	}
	w.Close() // after Commit: must not remove anything
	if !s.HasBlob(d) {
		t.Error("Close after Commit removed the blob")
	}
	if _, err := w.Write([]byte("more")); err == nil {
		t.Error("Write after Commit succeeded")
	}
	if _, err := w.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}
}

func TestBlobAbortLeavesNothing(t *testing.T) {
	s := openStore(t, t.TempDir())
	w, err := s.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	w.Write(randomBytes(100 << 10))
	w.Abort()
	w.Abort()
	assertEmpty(t, blobsDir(s))
	assertEmpty(t, s.tmp)
	if _, err := w.Write([]byte("x")); err == nil {
		t.Error("Write after Abort succeeded")
	}
	if _, err := w.Commit(); err == nil {
		t.Error("Commit after Abort succeeded")
	}

	// Close without Commit aborts too.
	w, err = s.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("abandoned"))
	w.Close()
	assertEmpty(t, blobsDir(s))
	assertEmpty(t, s.tmp)
}

func TestPutBlobReaderFailureLeavesNothing(t *testing.T) {
	s := openStore(t, t.TempDir())
	boom := errors.New("connection reset")
	r := io.MultiReader(bytes.NewReader(randomBytes(200<<10)), iotest.ErrReader(boom))
	if _, err := s.PutBlob(r); !errors.Is(err, boom) {
		t.Fatalf("PutBlob of a failing reader: %v, want %v", err, boom)
	}
	assertEmpty(t, blobsDir(s))
	assertEmpty(t, s.tmp)
}

func TestRecommitRepairsCorruptBlob(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := []byte("layer bytes")
	desc, err := s.PutBlob(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, s, desc.Digest, 3)
	if _, err := s.PutBlob(bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	assertClean(t, s)
}

func TestRejectsBadDigests(t *testing.T) {
	s := openStore(t, t.TempDir())
	for _, d := range []digest.Digest{
		"",
		"sha256:../../../etc/passwd",
		"sha256:ABCDEF",
		digest.Digest("sha512:" + strings.Repeat("ab", 64)),
	} {
		if _, err := s.OpenBlob(d); err == nil {
			t.Errorf("OpenBlob(%q) succeeded", d)
		}
		if _, err := s.BlobPath(d); err == nil {
			t.Errorf("BlobPath(%q) succeeded", d)
		}
		if _, err := s.Record(d); err == nil {
			t.Errorf("Record(%q) succeeded", d)
		}
		if _, err := s.Lock(t.Context(), d); err == nil {
			t.Errorf("Lock(%q) succeeded", d)
		}
		if s.Has(d) || s.HasBlob(d) {
			t.Errorf("Has/HasBlob(%q) true", d)
		}
	}
}

// flipByte corrupts byte i of blob d in place.
func flipByte(t *testing.T, s *Store, d digest.Digest, i int64) {
	t.Helper()
	p, err := s.BlobPath(d)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o644)
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, i); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x01
	if _, err := f.WriteAt(b, i); err != nil {
		t.Fatal(err)
	}
}
