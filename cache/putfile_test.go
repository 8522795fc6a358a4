package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestPutFileKeepsHoles(t *testing.T) {
	s := openStore(t, t.TempDir())
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, _ := os.Create(p)
	f.WriteAt([]byte("MBR"), 0)
	f.WriteAt(bytes.Repeat([]byte{7}, 100000), 128<<20)
	f.Truncate(512 << 20)
	f.Close()
	want, _ := os.ReadFile(p)
	desc, err := s.PutFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest != digest.FromBytes(want) || desc.Size != int64(len(want)) {
		t.Fatalf("descriptor %v, want %s %d", desc, digest.FromBytes(want), len(want))
	}
	bp, _ := s.BlobPath(desc.Digest)
	got, _ := os.ReadFile(bp)
	if !bytes.Equal(got, want) {
		t.Fatal("stored bytes differ")
	}
	fi, _ := os.Stat(bp)
	if alloc := fi.Sys().(*syscall.Stat_t).Blocks * 512; alloc > 8<<20 {
		t.Errorf("the blob allocates %d bytes of a 512 MiB sparse file", alloc)
	}
	if problems, err := s.Verify(); err != nil || len(problems) > 0 {
		t.Errorf("verify: %v %v", problems, err)
	}
}
