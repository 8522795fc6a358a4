package cache

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestDefaultDir(t *testing.T) {
	for _, tc := range []struct {
		name, fgimg, xdg, home, want string
	}{
		{"FGIMG_CACHE wins", "/c/fgimg", "/x", "/h", "/c/fgimg"},
		{"XDG_CACHE_HOME", "", "/x", "/h", "/x/fgimg"},
		{"relative XDG_CACHE_HOME is ignored", "", "rel", "/h", "/h/.cache/fgimg"},
		{"home", "", "", "/h", "/h/.cache/fgimg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("FGIMG_CACHE", tc.fgimg)
			t.Setenv("XDG_CACHE_HOME", tc.xdg)
			t.Setenv("HOME", tc.home)
			got, err := DefaultDir()
			if err != nil || got != tc.want {
				t.Errorf("DefaultDir() = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestOpenRemovesAbandonedScratchOnly(t *testing.T) {
	dir := t.TempDir()
	live := openStore(t, dir)
	w, err := live.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	data := randomBytes(1000)
	w.Write(data[:500])

	// Debris of a dead process: a scratch dir nobody locks, and a file.
	dead := filepath.Join(dir, "tmp", "123456")
	if err := os.MkdirAll(filepath.Join(dead, "ro"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dead, "ro", "blob-1"), []byte("half"), 0o644)
	os.Chmod(filepath.Join(dead, "ro"), 0o555) // as in an unpacked rootfs
	os.WriteFile(filepath.Join(dir, "tmp", "stray"), []byte("x"), 0o644)

	other := openStore(t, dir)
	got := names(t, filepath.Join(dir, "tmp"))
	want := []string{filepath.Base(live.tmp), filepath.Base(other.tmp)}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("tmp/ holds %v after Open, want only the live stores' %v", got, want)
	}

	// The live store's writer was not disturbed.
	w.Write(data[500:])
	desc, err := w.Commit()
	if err != nil {
		t.Fatal(err)
	}
	f, err := other.OpenBlob(desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var buf bytes.Buffer
	buf.ReadFrom(f)
	if !bytes.Equal(buf.Bytes(), data) {
		t.Error("blob written across another Open differs from the data")
	}
}

func TestCloseRemovesScratch(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.NewBlob()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("unfinished"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	assertEmpty(t, filepath.Join(dir, "tmp"))
	if _, err := w.Commit(); err == nil {
		t.Error("Commit after Close succeeded")
	}
	if _, err := s.NewBlob(); err == nil {
		t.Error("NewBlob after Close succeeded")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
