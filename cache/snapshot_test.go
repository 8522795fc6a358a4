package cache

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// copyUnpack "unpacks" a layer by copying it into dir/layer.
func copyUnpack(r io.Reader, dir string) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "layer"), b, 0o644)
}

func TestSnapshotUnpacksOnce(t *testing.T) {
	dir := t.TempDir()
	stores := []*Store{openStore(t, dir), openStore(t, dir)}
	data := randomBytes(256 << 10)
	layer, err := stores[0].PutBlob(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	unpack := func(r io.Reader, dir string) error {
		calls.Add(1)
		time.Sleep(30 * time.Millisecond) // let the other callers arrive
		return copyUnpack(r, dir)
	}
	var wg sync.WaitGroup
	dirs := make([]string, 6)
	errs := make([]error, 6)
	for i := range dirs {
		wg.Go(func() { dirs[i], errs[i] = stores[i%2].Snapshot(layer.Digest, unpack) })
	}
	wg.Wait()
	if calls.Load() != 1 {
		t.Errorf("unpack ran %d times, want once", calls.Load())
	}
	for i := range dirs {
		if errs[i] != nil || dirs[i] != dirs[0] {
			t.Errorf("caller %d got %q, %v; want %q", i, dirs[i], errs[i], dirs[0])
		}
	}
	snap := dirs[0]
	if filepath.Dir(snap) != stores[0].SnapshotsDir() || len(filepath.Base(snap)) != 16 {
		t.Errorf("snapshot dir %s, want a 16-character name in %s", snap, stores[0].SnapshotsDir())
	}
	if got, _ := os.ReadFile(filepath.Join(snap, "layer")); !bytes.Equal(got, data) {
		t.Error("unpack was not given the layer blob")
	}
	if fi, _ := os.Stat(snap); fi.Mode().Perm() != 0o700 {
		t.Errorf("snapshot mode %v, want 0700 (private to the cache's owner)", fi.Mode().Perm())
	}

	// Later calls reuse it without unpacking.
	again, err := stores[1].Snapshot(layer.Digest, func(io.Reader, string) error {
		t.Error("unpack called for an existing snapshot")
		return nil
	})
	if err != nil || again != snap {
		t.Errorf("second Snapshot = %q, %v; want %q", again, err, snap)
	}
	for _, s := range stores {
		assertEmpty(t, s.tmp)
	}
}

func TestSnapshotFailedUnpackLeavesNothing(t *testing.T) {
	s := openStore(t, t.TempDir())
	layer, _ := s.PutBlob(bytes.NewReader([]byte("layer")))
	boom := errors.New("bad tar")
	_, err := s.Snapshot(layer.Digest, func(r io.Reader, dir string) error {
		os.WriteFile(filepath.Join(dir, "partial"), []byte("x"), 0o644)
		os.Mkdir(filepath.Join(dir, "proc"), 0o555)
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Snapshot with a failing unpack: %v, want %v", err, boom)
	}
	assertEmpty(t, s.SnapshotsDir())
	assertEmpty(t, s.tmp)

	snap, err := s.Snapshot(layer.Digest, copyUnpack)
	if err != nil {
		t.Fatalf("Snapshot after a failed one: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(snap, "layer")); string(got) != "layer" {
		t.Errorf("snapshot holds %q", got)
	}
}

func TestSnapshotOfMissingBlob(t *testing.T) {
	s := openStore(t, t.TempDir())
	_, err := s.Snapshot(digest.FromString("absent"), func(io.Reader, string) error {
		t.Error("unpack called without a blob")
		return nil
	})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Snapshot of a missing blob: %v, want not-exist", err)
	}
	assertEmpty(t, s.SnapshotsDir())
}
