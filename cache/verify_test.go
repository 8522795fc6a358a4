package cache

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestVerifyDetectsCorruptBlob(t *testing.T) {
	s := openStore(t, t.TempDir())
	data := randomBytes(300 << 10)
	if _, err := buildStage(s, stageDigest("x"), data); err != nil {
		t.Fatal(err)
	}
	assertClean(t, s)

	d := digest.FromBytes(data)
	flipByte(t, s, d, 12345)
	data[12345] ^= 0x01
	problems, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	want := Problem{Kind: CorruptBlob, Path: filepath.Join(blobsDir(s), d.Encoded()), Digest: d, Actual: digest.FromBytes(data)}
	if len(problems) != 1 || problems[0] != want {
		t.Errorf("Verify = %v, want [%v]", problems, want)
	}
}

func TestVerifyReportsStrayFiles(t *testing.T) {
	s := openStore(t, t.TempDir())
	os.WriteFile(filepath.Join(blobsDir(s), "notes.txt"), []byte("x"), 0o644)
	problems, _ := s.Verify()
	if len(problems) != 1 || problems[0].Kind != StrayFile {
		t.Errorf("Verify = %v, want one stray file", problems)
	}
}

func TestUsage(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := randomBytes(1000)
	b := randomBytes(2345)
	ra, _ := buildStage(s, stageDigest("a"), a)
	if _, err := buildStage(s, stageDigest("b"), b); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutBlob(bytes.NewReader(a)); err != nil { // deduplicated
		t.Fatal(err)
	}
	// A snapshot with a hard-linked file, which counts once.
	if _, err := s.Snapshot(ra.Outputs[0].Digest, func(_ io.Reader, dir string) error {
		if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 100), 0o644); err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
			return err
		}
		return os.Link(filepath.Join(dir, "f"), filepath.Join(dir, "sub", "g"))
	}); err != nil {
		t.Fatal(err)
	}
	u, err := s.Usage()
	if err != nil {
		t.Fatal(err)
	}
	logs := int64(len("log of "+stageDigest("a")) + len("log of "+stageDigest("b")))
	if u.Blobs.Count != 4 || u.Blobs.Bytes != int64(len(a)+len(b))+logs {
		t.Errorf("Usage().Blobs = %+v, want 4 blobs of %d bytes", u.Blobs, int64(len(a)+len(b))+logs)
	}
	var recBytes int64
	for _, d := range []digest.Digest{stageDigest("a"), stageDigest("b")} {
		fi, err := os.Stat(filepath.Join(s.Dir(), "records", "sha256", d.Encoded()+".json"))
		if err != nil {
			t.Fatal(err)
		}
		recBytes += fi.Size()
	}
	if u.Snapshots != (Tally{Count: 1, Bytes: 100}) {
		t.Errorf("Usage().Snapshots = %+v, want 1 snapshot of 100 bytes", u.Snapshots)
	}
	if u.Records.Count != 2 || u.Records.Bytes != recBytes {
		t.Errorf("Usage().Records = %+v, want 2 records of %d bytes", u.Records, recBytes)
	}
}
