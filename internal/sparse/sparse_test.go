package sparse

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestCopyKeepsHoles(t *testing.T) {
	dir := t.TempDir()
	src, _ := os.Create(filepath.Join(dir, "src"))
	src.WriteAt([]byte("head"), 0)
	src.WriteAt(bytes.Repeat([]byte("x"), 70000), 64<<20)
	src.Truncate(256 << 20) // ends in a hole
	ext, err := Extents(src)
	if err != nil {
		t.Fatal(err)
	}
	var data int64
	for _, e := range ext {
		data += e.Len
	}
	if data > 1<<20 {
		t.Skipf("the file system does not report holes (%d data bytes)", data)
	}
	dst, _ := os.Create(filepath.Join(dir, "dst"))
	if err := Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src.Name())
	b, _ := os.ReadFile(dst.Name())
	if !bytes.Equal(a, b) {
		t.Fatal("the copy differs")
	}
	var st1, st2 os.FileInfo
	st1, _ = src.Stat()
	st2, _ = dst.Stat()
	if st2.Size() != st1.Size() {
		t.Fatalf("size %d, want %d", st2.Size(), st1.Size())
	}
	if blocks(st2) > 4<<20 {
		t.Errorf("the copy allocates %d bytes: holes were filled", blocks(st2))
	}
}
