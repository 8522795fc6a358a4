package cache

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// The planner asks the store only this.
var _ interface{ Has(digest.Digest) bool } = (*Store)(nil)

func TestRecordRoundTrip(t *testing.T) {
	s := openStore(t, t.TempDir())
	disk, _ := s.PutBlob(strings.NewReader("disk image"))
	kernel, _ := s.PutBlob(strings.NewReader("kernel"))
	log, _ := s.PutBlob(strings.NewReader("build log"))
	want := Record{
		Digest: stageDigest("target"),
		Kind:   "raw",
		Inputs: []digest.Digest{stageDigest("a"), stageDigest("b")},
		Outputs: []Output{
			{Name: "disk.raw", Digest: disk.Digest, Size: disk.Size, MediaType: "application/octet-stream"},
			{Name: "vmlinuz", Digest: kernel.Digest, Size: kernel.Size},
		},
		Info:     map[string]string{"manifest": string(stageDigest("m"))},
		Created:  time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC),
		Duration: 1500 * time.Millisecond,
		Log:      log.Digest,
	}
	if err := s.PutRecord(want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Record(want.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Record() = %+v\nwant %+v", got, want)
	}
	if !s.Has(want.Digest) {
		t.Error("Has false for a complete record")
	}

	// A zero Created is filled in.
	want.Digest, want.Created = stageDigest("later"), time.Time{}
	before := time.Now()
	if err := s.PutRecord(want); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Record(want.Digest)
	if got.Created.Before(before.Add(-time.Second)) || got.Created.After(time.Now().Add(time.Second)) {
		t.Errorf("Created = %v, want about %v", got.Created, before)
	}
}

func TestHasOnlyForCompleteRecords(t *testing.T) {
	s := openStore(t, t.TempDir())
	stage := stageDigest("x")
	layer := []byte("layer of x")
	ld := digest.FromBytes(layer)
	rec := Record{Digest: stage, Kind: "files", Outputs: []Output{{Name: "layer", Digest: ld, Size: int64(len(layer))}}}

	if s.Has(stage) {
		t.Fatal("Has true in an empty store")
	}
	if _, err := s.Record(stage); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Record of an unknown digest: %v, want not-exist", err)
	}
	// A record may not name a blob that is not committed.
	if err := s.PutRecord(rec); err == nil {
		t.Fatal("PutRecord succeeded before its blob was committed")
	}
	if s.Has(stage) {
		t.Error("Has true after a refused PutRecord")
	}
	assertEmpty(t, filepath.Join(s.Dir(), "records", "sha256"))

	if _, err := s.PutBlob(bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	if s.Has(stage) {
		t.Error("Has true with the blob but no record")
	}
	if err := s.PutRecord(rec); err != nil {
		t.Fatal(err)
	}
	if !s.Has(stage) {
		t.Fatal("Has false after PutRecord")
	}

	// Losing an output blob makes the record incomplete.
	p, _ := s.BlobPath(ld)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if s.Has(stage) {
		t.Error("Has true although the output blob is gone")
	}
	problems, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0].Kind != MissingBlob || problems[0].Digest != ld || problems[0].Record != stage {
		t.Errorf("Verify = %v, want one missing blob %s named by record %s", problems, ld, stage)
	}
}

func TestPutRecordChecksSizes(t *testing.T) {
	s := openStore(t, t.TempDir())
	desc, _ := s.PutBlob(strings.NewReader("12345"))
	rec := Record{Digest: stageDigest("x"), Outputs: []Output{{Name: "layer", Digest: desc.Digest, Size: 4}}}
	if err := s.PutRecord(rec); err == nil {
		t.Error("PutRecord accepted a wrong output size")
	}
	rec.Outputs[0].Size = 5
	rec.Log = digest.FromString("no such log")
	if err := s.PutRecord(rec); err == nil {
		t.Error("PutRecord accepted a missing log blob")
	}
	if s.Has(rec.Digest) {
		t.Error("Has true after refused records")
	}
}

func TestRecordsAndRemove(t *testing.T) {
	s := openStore(t, t.TempDir())
	var ds []digest.Digest
	for i, name := range []string{"c", "a", "b"} {
		rec, err := buildStage(s, stageDigest(name), []byte(name))
		if err != nil {
			t.Fatal(err)
		}
		// Rewrite with increasing times, so the order is known.
		rec.Created = time.Date(2025, 1, 1, 0, 0, i, 0, time.UTC)
		if err := s.PutRecord(rec); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, rec.Digest)
	}
	recs, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	var got []digest.Digest
	for _, r := range recs {
		got = append(got, r.Digest)
	}
	if !reflect.DeepEqual(got, ds) {
		t.Errorf("Records() = %v, want %v (oldest first)", got, ds)
	}

	if err := s.Remove(ds[1]); err != nil {
		t.Fatal(err)
	}
	if s.Has(ds[1]) {
		t.Error("Has true after Remove")
	}
	if recs, _ := s.Records(); len(recs) != 2 {
		t.Errorf("Records() after Remove has %d records, want 2", len(recs))
	}
	if err := s.Remove(ds[1]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("second Remove: %v, want not-exist", err)
	}
	assertClean(t, s)
}

func TestUnreadableRecordIsReported(t *testing.T) {
	s := openStore(t, t.TempDir())
	if _, err := buildStage(s, stageDigest("good"), []byte("good")); err != nil {
		t.Fatal(err)
	}
	bad := stageDigest("bad")
	p := filepath.Join(s.Dir(), "records", "sha256", bad.Encoded()+".json")
	if err := os.WriteFile(p, []byte(`{"version":1,"digest":"sha256:`), 0o644); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Records()
	if err == nil || !strings.Contains(err.Error(), bad.String()) {
		t.Errorf("Records() error = %v, want one naming %s", err, bad)
	}
	if len(recs) != 1 || recs[0].Digest != stageDigest("good") {
		t.Errorf("Records() = %v, want the good record only", recs)
	}
	if s.Has(bad) {
		t.Error("Has true for a truncated record")
	}
	problems, _ := s.Verify()
	if len(problems) != 1 || problems[0].Kind != BadRecord || problems[0].Digest != bad {
		t.Errorf("Verify = %v, want one bad record %s", problems, bad)
	}
}
