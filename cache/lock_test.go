package cache

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Builders in goroutines, through two Stores on one directory, as two
// processes would: exactly one builds, the others wait and find the record.
func TestLockExcludesGoroutines(t *testing.T) {
	dir := t.TempDir()
	stores := []*Store{openStore(t, dir), openStore(t, dir)}
	stage := stageDigest("shared")
	var holders, maxHolders, builds atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Go(func() {
			s := stores[i%2]
			unlock, err := s.Lock(t.Context(), stage)
			if err != nil {
				errs <- err
				return
			}
			defer unlock()
			n := holders.Add(1)
			defer holders.Add(-1)
			if n > maxHolders.Load() {
				maxHolders.Store(n)
			}
			if s.Has(stage) {
				return
			}
			builds.Add(1)
			time.Sleep(20 * time.Millisecond) // give the others time to pile up
			if _, err := buildStage(s, stage, []byte("layer")); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if builds.Load() != 1 || maxHolders.Load() != 1 {
		t.Errorf("%d builds with up to %d lock holders at once, want 1 and 1", builds.Load(), maxHolders.Load())
	}
}

func TestLockHonoursContext(t *testing.T) {
	s := openStore(t, t.TempDir())
	stage := stageDigest("x")
	unlock, err := s.Lock(t.Context(), stage)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := s.Lock(ctx, stage); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held digest: %v, want deadline exceeded", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Lock returned %v after its deadline", el)
	}
	// Other digests are not affected.
	unlock2, err := s.Lock(ctx, stageDigest("y"))
	if err == nil {
		unlock2()
	}
	unlock()
	unlock() // idempotent
	unlock, err = s.Lock(t.Context(), stage)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	unlock()
}

// A second process holds the lock while it builds; we wait, then see its
// record and skip.
func TestLockExcludesProcesses(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	stage := stageDigest("shared")
	h := startHelper(t, "lock-hold", dir, stage)
	h.expect(t, "locked")

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := s.Lock(ctx, stage); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock while another process holds it: %v, want deadline exceeded", err)
	}

	type result struct {
		unlock func()
		err    error
	}
	got := make(chan result, 1)
	go func() {
		unlock, err := s.Lock(t.Context(), stage)
		got <- result{unlock, err}
	}()
	select {
	case r := <-got:
		t.Fatalf("Lock returned (%v) while the helper holds it", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	fmt.Fprintln(h.stdin, "build") // the helper builds and exits
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	defer r.unlock()
	if !s.Has(stage) {
		t.Fatal("after waiting for the other process, Has is false")
	}
	rec, _ := s.Record(stage)
	f, _ := s.OpenBlob(rec.Outputs[0].Digest)
	defer f.Close()
	b := make([]byte, 64)
	n, _ := f.Read(b)
	if string(b[:n]) != "built by helper" {
		t.Errorf("layer = %q, want the helper's", b[:n])
	}
	if err := h.cmd.Wait(); err != nil {
		t.Errorf("helper: %v; stderr: %s", err, h.stderr)
	}
}

// The kernel releases a dead holder's lock.
func TestLockReleasedWhenHolderDies(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	stage := stageDigest("shared")
	h := startHelper(t, "lock-hold", dir, stage)
	h.expect(t, "locked")
	h.kill9(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	unlock, err := s.Lock(ctx, stage)
	if err != nil {
		t.Fatalf("Lock after the holder was killed: %v", err)
	}
	unlock()
	if s.Has(stage) {
		t.Error("Has true for a stage whose builder was killed")
	}
}
