package targets

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTarKeepsSparseFiles: a sparse file in the image (stored dense in
// its layer, as every layer stores contents) comes out of Squash, the tar
// target's writer, sparse: the tarball is about the size of its data, and GNU tar -xS
// extracts it with holes. Runs of zeros shorter than minHole stay data.
func TestTarKeepsSparseFiles(t *testing.T) {
	const size = 16 << 20
	var want []byte
	l := treeLayer(t, "files", func(dir string) {
		f, err := os.Create(filepath.Join(dir, "disk.img"))
		if err != nil {
			t.Fatal(err)
		}
		f.WriteAt([]byte("head"), 0)
		f.WriteAt([]byte("middle"), 3<<20)
		f.WriteAt(bytes.Repeat([]byte("m"), 100<<10), 9<<20+123)
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		// Zeros inside, but no run of minHole: stays as it is.
		small := append(append(bytes.Repeat([]byte("a"), 100<<10), make([]byte, minHole-holeBlock)...), bytes.Repeat([]byte("b"), 100<<10)...)
		if err := os.WriteFile(filepath.Join(dir, "padded"), small, 0o755); err != nil {
			t.Fatal(err)
		}
		if want, err = os.ReadFile(filepath.Join(dir, "disk.img")); err != nil {
			t.Fatal(err)
		}
	})
	if l.Size < size {
		t.Fatalf("the layer is %d bytes: not dense, the test proves nothing", l.Size)
	}
	b := squash(t, []Layer{l}, nil)
	if len(b) > 2<<20 {
		t.Errorf("the tarball is %d bytes for a %d-byte file with 200 KiB of data: written dense", len(b), size)
	}
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(tarball, b, 0o644); err != nil {
		t.Fatal(err)
	}

	f, err := os.Open(tarball)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ms := readTar(t, f)
	if len(ms) != 2 || ms[0].hdr.Name != "disk.img" || ms[1].hdr.Name != "padded" {
		t.Fatalf("entries:\n%s", describe(ms))
	}
	if !isSparse(ms[0].hdr) || ms[0].body != string(want) {
		t.Errorf("disk.img: sparse %v, contents equal %v", isSparse(ms[0].hdr), ms[0].body == string(want))
	}
	if isSparse(ms[1].hdr) || len(ms[1].body) != 200<<10+minHole-holeBlock {
		t.Errorf("padded: sparse %v, %d bytes", isSparse(ms[1].hdr), len(ms[1].body))
	}
	if ms[1].hdr.Mode != 0o755 || !ms[0].hdr.ModTime.Equal(ms[0].hdr.ModTime.Truncate(time.Second)) && ms[0].hdr.PAXRecords["mtime"] == "" {
		t.Errorf("metadata lost: %+v", ms[0].hdr)
	}

	out := t.TempDir()
	if b, err := exec.Command("tar", "-xSf", tarball, "-C", out).CombinedOutput(); err != nil {
		t.Fatalf("GNU tar: %v\n%s", err, b)
	}
	got, err := os.ReadFile(filepath.Join(out, "disk.img"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("GNU tar extracts other contents")
	}
	var sst syscall.Stat_t
	if err := syscall.Stat(filepath.Join(out, "disk.img"), &sst); err != nil {
		t.Fatal(err)
	}
	if used := sst.Blocks * 512; used > 1<<20 {
		t.Errorf("GNU tar -xS extracted disk.img with %d bytes on disk: not sparse", used)
	}
	if b, err := exec.Command("tar", "-tvf", tarball).CombinedOutput(); err != nil || !strings.Contains(string(b), " disk.img\n") {
		t.Errorf("tar -tv: %v\n%s", err, b)
	}
}

// A sparse file whose name does not fit the ustar header keeps it (in
// GNU.sparse.name), as its xattrs and sub-second time, for archive/tar
// and GNU tar alike.
func TestTarSparseLongName(t *testing.T) {
	long := strings.Repeat("d", 120)
	body := string(make([]byte, 2*minHole)) + "end"
	f := file(long+"/f", body)
	f.mtime = time.Unix(1700000000, 500)
	f.pax = map[string]string{"SCHILY.xattr.user.note": "kept"}
	b := squash(t, []Layer{tarLayer(t, "", dir(long), f)}, nil)
	ms := readTar(t, bytes.NewReader(b))
	if len(ms) != 2 || ms[1].hdr.Name != long+"/f" || ms[1].body != body || !isSparse(ms[1].hdr) {
		t.Fatalf("entries:\n%s", describe(ms))
	}
	if h := ms[1].hdr; !h.ModTime.Equal(f.mtime) || h.PAXRecords["SCHILY.xattr.user.note"] != "kept" {
		t.Errorf("metadata: mtime %v, records %v", h.ModTime, h.PAXRecords)
	}
	tarball := filepath.Join(t.TempDir(), "rootfs.tar")
	if err := os.WriteFile(tarball, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if o, err := exec.Command("tar", "-xSf", tarball, "-C", out).CombinedOutput(); err != nil {
		t.Fatalf("GNU tar: %v\n%s", err, o)
	}
	if got, err := os.ReadFile(filepath.Join(out, long, "f")); err != nil || string(got) != body {
		t.Errorf("GNU tar extracts %d bytes, %v", len(got), err)
	}
}

// TestSquashFindsHolesAnywhere: Squash rules files out by probing one
// block in every minHole; a hole of just minHole, wherever it starts on
// a block boundary (and one that ends the file, its last block short),
// is still found.
func TestSquashFindsHolesAnywhere(t *testing.T) {
	const size = 4*minHole + 100 // the last block is short
	want := map[string][]byte{}
	l := treeLayer(t, "files", func(dir string) {
		add := func(name string, holeAt, holeLen int) {
			b := bytes.Repeat([]byte("x"), size)
			clear(b[holeAt : holeAt+holeLen])
			want[name] = b
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for at := holeBlock; at <= 2*minHole; at += holeBlock {
			add(fmt.Sprintf("hole%07d", at), at, minHole)
		}
		add("tail", 3*minHole, size-3*minHole) // the latest start that makes a hole
	})
	ms := readTar(t, bytes.NewReader(squash(t, []Layer{l}, nil)))
	if len(ms) != len(want) {
		t.Fatalf("%d entries, want %d:\n%s", len(ms), len(want), describe(ms))
	}
	for _, m := range ms {
		if !isSparse(m.hdr) || m.body != string(want[m.hdr.Name]) {
			t.Errorf("%s: sparse %v, contents equal %v", m.hdr.Name, isSparse(m.hdr), m.body == string(want[m.hdr.Name]))
		}
	}
}
