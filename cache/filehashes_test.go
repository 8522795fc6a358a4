package cache

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestFileHashes(t *testing.T) {
	s := openStore(t, t.TempDir())
	p := filepath.Join(t.TempDir(), "rootfs.tar")
	os.WriteFile(p, []byte("one"), 0o644)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(p, old, old)
	fi, _ := os.Stat(p)
	// ctime is now: within the racy window nothing is remembered.
	h := s.FileHashes()
	h.Put(p, fi, digest.FromString("one"))
	if _, ok := h.Get(p, fi); ok {
		t.Fatal("a file changed just now must not be remembered")
	}
	// Past the window it is, and it survives Save and a reload.
	time.Sleep(racyWindow + 100*time.Millisecond)
	fi, _ = os.Stat(p)
	h.Put(p, fi, digest.FromString("one"))
	if err := h.Save(); err != nil {
		t.Fatal(err)
	}
	h = s.FileHashes()
	if d, ok := h.Get(p, fi); !ok || d != digest.FromString("one") {
		t.Fatalf("after reload: %v %v", d, ok)
	}
	// Any change of content shows in the stat data: a miss.
	os.WriteFile(p, []byte("two"), 0o644)
	os.Chtimes(p, old, old) // even with the old mtime back, ctime moved
	fi, _ = os.Stat(p)
	if _, ok := h.Get(p, fi); ok {
		t.Error("a rewritten file must be hashed again")
	}
}
