package cache

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A builder killed with SIGKILL in the middle of a large blob leaves no
// trace that matters: the store opens, removes the debris, is consistent,
// and a fresh write succeeds.
func TestKillDuringBlobWrite(t *testing.T) {
	dir := t.TempDir()
	stage := stageDigest("big")
	h := startHelper(t, "write-forever", dir, stage)
	h.expect(t, "writing")
	h.kill9(t)

	if n := len(names(t, filepath.Join(dir, "tmp"))); n != 1 {
		t.Fatalf("the killed helper left %d scratch dirs, want 1 (else this test proves nothing)", n)
	}
	s := openStore(t, dir)
	if got := names(t, filepath.Join(dir, "tmp")); len(got) != 1 || got[0] != filepath.Base(s.tmp) {
		t.Errorf("tmp/ holds %v after Open, want only this store's scratch", got)
	}
	if s.Has(stage) {
		t.Error("Has true after the builder was killed")
	}
	assertEmpty(t, blobsDir(s))
	assertClean(t, s)

	data := randomBytes(1 << 20)
	if _, err := buildStage(s, stage, data); err != nil {
		t.Fatal(err)
	}
	if !s.Has(stage) {
		t.Error("Has false after a fresh build")
	}
	assertClean(t, s)
}

// A builder killed at an arbitrary moment while building stage after
// stage never leaves a record that looks complete but is not.
func TestKillDuringBuildLoop(t *testing.T) {
	dir := t.TempDir()
	h := startHelper(t, "build-loop", dir, "")
	// Let it build a few stages, then kill it at a moment we do not pick.
	var last string
	for range 5 {
		line, err := h.stdout.ReadString('\n')
		if err != nil {
			t.Fatalf("helper: %v; stderr: %s", err, h.stderr)
		}
		last = strings.TrimSpace(line)
	}
	time.Sleep(time.Duration(time.Now().UnixNano()%5) * time.Millisecond)
	h.kill9(t)

	s := openStore(t, dir)
	recs, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.Atoi(last); len(recs) < n+1 {
		t.Errorf("%d records, but the helper reported building stage %s", len(recs), last)
	}
	for _, r := range recs {
		if !s.Has(r.Digest) {
			t.Errorf("record %s is listed but Has is false", r.Digest)
		}
	}
	assertClean(t, s)
	if _, err := s.PutBlob(bytes.NewReader([]byte("after the crash"))); err != nil {
		t.Fatal(err)
	}
}
