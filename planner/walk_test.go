package planner

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestWalkOrderParallelismAndFailures(t *testing.T) {
	p := mustPlan(t, load(t, []string{"testdata/pedigree"}), Options{})
	var mu sync.Mutex
	doneAt := map[*Stage]int{}
	var running, peak atomic.Int32
	boom := errors.New("boom")
	hpcPackages := p.Image("hpc").Stages[6]
	errs := p.Walk(context.Background(), 2, func(ctx context.Context, s *Stage) error {
		n := running.Add(1)
		for {
			old := peak.Load()
			if n <= old || peak.CompareAndSwap(old, n) {
				break
			}
		}
		time.Sleep(2 * time.Millisecond)
		running.Add(-1)
		mu.Lock()
		defer mu.Unlock()
		if s.Input != nil {
			if _, ok := doneAt[s.Input]; !ok {
				t.Errorf("stage %s ran before its input", s.Digest)
			}
		}
		doneAt[s] = len(doneAt)
		if s == hpcPackages {
			return boom
		}
		return nil
	})
	if peak.Load() > 2 {
		t.Errorf("%d stages ran at once with -j 2", peak.Load())
	}
	if peak.Load() < 2 {
		t.Error("independent stages never ran in parallel")
	}
	if errs[hpcPackages] != boom {
		t.Errorf("the failed stage's error: %v", errs[hpcPackages])
	}
	// Everything above hpc's packages stage is not run: hpc's files,
	// hadoop, both targets on them and the disk's adaptation; hpc-copy
	// shares the stages.
	for _, s := range append(p.Image("hadoop").Stages[7:], p.Targets[0].Write, p.Targets[1].Write, p.Targets[1].Adapt[0]) {
		if !errors.Is(errs[s], ErrInputFailed) {
			t.Errorf("stage %s %s: %v, want not run", s.Kind(), Short(s.Digest), errs[s])
		}
		if _, ran := doneAt[s]; ran {
			t.Errorf("stage above a failure ran")
		}
	}
	// Independent work finished: web, alpine and their targets.
	for _, s := range append(p.Image("web").Stages, p.Image("alpine").Stages...) {
		if errs[s] != nil {
			t.Errorf("independent stage %s: %v", s.Kind(), errs[s])
		}
	}
	if len(errs) != 1+1+1+2+1 {
		t.Errorf("%d stages failed or not run, want 6", len(errs))
	}
}

func TestWalkStopsOnCancel(t *testing.T) {
	p := mustPlan(t, load(t, []string{"testdata/pedigree"}), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Int32
	errs := p.Walk(ctx, 1, func(ctx context.Context, s *Stage) error {
		if ran.Add(1) == 3 {
			cancel()
		}
		return ctx.Err()
	})
	if got := ran.Load(); got > 4 {
		t.Errorf("%d stages started after cancel", got)
	}
	if len(errs) != len(p.Stages)-2 {
		t.Errorf("%d of %d stages not done", len(errs), len(p.Stages))
	}
}
