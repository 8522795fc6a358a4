package cache

import (
	"context"
	"os"
	"slices"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestDrop(t *testing.T) {
	s := openStore(t, t.TempDir())
	shared := tarLayer(t, "etc/shared", "s")
	a, b, c := stageDigest("a"), stageDigest("b"), stageDigest("c")
	recA, err := buildStage(s, a, tarLayer(t, "etc/a", "a"))
	if err != nil {
		t.Fatal(err)
	}
	recB, err := buildStage(s, b, shared)
	if err != nil {
		t.Fatal(err)
	}
	// c's layer is the same bytes as b's: dropping b must keep it.
	if _, err := buildStage(s, c, shared); err != nil {
		t.Fatal(err)
	}
	snapA, err := s.Snapshot(recA.Outputs[0].Digest, unpackLayer)
	if err != nil {
		t.Fatal(err)
	}
	// Stage c is being built: its lock is held.
	unlock, err := s.Lock(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()

	dry, err := s.Drop([]digest.Digest{a, b, c}, true)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(dry.Busy, []digest.Digest{c}) || len(dry.Records) != 2 {
		t.Errorf("dry run: records %v busy %v, want a and b, c busy", dry.Records, dry.Busy)
	}
	// a's layer and log, b's log: b's layer is c's too.
	wantBytes := recA.Outputs[0].Size + sizeOf(t, s, recA.Log) + sizeOf(t, s, recB.Log)
	if dry.Bytes != wantBytes || len(dry.Blobs) != 3 {
		t.Errorf("dry run frees %d bytes in %d blobs, want %d in 3", dry.Bytes, len(dry.Blobs), wantBytes)
	}
	if !s.Has(a) || !s.Has(b) || !isDir(snapA) {
		t.Fatal("a dry run removed something")
	}

	got, err := s.Drop([]digest.Digest{a, b, c}, false)
	if err != nil {
		t.Fatal(err)
	}
	if got.Bytes != dry.Bytes || !slices.Equal(got.Busy, dry.Busy) {
		t.Errorf("drop: %+v, the dry run said %+v", got, dry)
	}
	if s.Has(a) || s.Has(b) || !s.Has(c) {
		t.Errorf("after drop: has a %v, b %v, c %v; want only c", s.Has(a), s.Has(b), s.Has(c))
	}
	if s.HasBlob(recA.Outputs[0].Digest) || !s.HasBlob(recB.Outputs[0].Digest) {
		t.Error("drop removed the wrong layers")
	}
	if _, err := os.Stat(snapA); !os.IsNotExist(err) {
		t.Errorf("the snapshot of a's layer is still there: %v", err)
	}
	assertClean(t, s)
}

func sizeOf(t *testing.T, s *Store, d digest.Digest) int64 {
	t.Helper()
	n, err := s.blobSize(d)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A stage a build holds in use, reading it, is busy to Drop; many can
// hold it at once; released, it can go.
func TestDropLeavesHeldStages(t *testing.T) {
	s := openStore(t, t.TempDir())
	a := stageDigest("a")
	if _, err := buildStage(s, a, tarLayer(t, "etc/a", "a")); err != nil {
		t.Fatal(err)
	}
	release1, err := s.Hold([]digest.Digest{a})
	if err != nil {
		t.Fatal(err)
	}
	release2, err := s.Hold([]digest.Digest{a})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Drop([]digest.Digest{a}, false)
	if err != nil || !slices.Equal(got.Busy, []digest.Digest{a}) || !s.Has(a) {
		t.Fatalf("drop of a held stage: %+v %v (cached: %v)", got, err, s.Has(a))
	}
	release1()
	if got, _ := s.Drop([]digest.Digest{a}, false); len(got.Busy) != 1 {
		t.Fatalf("drop while a second build holds it: %+v", got)
	}
	release2()
	if got, err := s.Drop([]digest.Digest{a}, false); err != nil || len(got.Busy) != 0 || s.Has(a) {
		t.Fatalf("drop once released: %+v %v", got, err)
	}
}
