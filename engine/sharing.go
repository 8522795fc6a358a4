package engine

import (
	"context"
	"sync"
	"time"

	"github.com/fgimg/fgimg/planner"
)

// sharing is one build's traffic with the shared repository: pulls in
// the walk, pushes in the background (a stage's dependents need not wait
// for its upload), and every failure reported, never fatal.
type sharing struct {
	sh     Shared
	rep    *reporter
	ctx    context.Context
	pushes sync.WaitGroup
	once   sync.Once
}

// startSharing asks the shared repository, in one batch, about every
// stage the store lacks, so that the walk's pulls know at once.
func (e *Engine) startSharing(ctx context.Context, rep *reporter, p *planner.Plan) *sharing {
	sh := &sharing{sh: e.Shared, rep: rep, ctx: ctx}
	if e.Shared == nil {
		return sh
	}
	var ask []*planner.Stage
	for _, s := range p.Stages {
		if s.Node == planner.ImageStage || s.Node == planner.AdaptStage || s.Node == planner.TargetWrite {
			ask = append(ask, s)
		}
	}
	if err := e.Shared.Find(ctx, ask); err != nil {
		rep.send(Event{Kind: NotShared, Name: "lookup", Err: err})
	}
	return sh
}

// pull pulls s when the shared repository has it and reports it; false:
// s is to be built here (absent, or the pull failed, which is reported).
func (sh *sharing) pull(ctx context.Context, s *planner.Stage, name string) bool {
	if sh.sh == nil {
		return false
	}
	start := time.Now()
	ok, n, err := sh.sh.Pull(ctx, s)
	if err != nil {
		sh.rep.send(Event{Kind: NotShared, Stage: s, Name: name, Err: err})
		return false
	}
	if ok {
		sh.rep.send(Event{Kind: Pulled, Stage: s, Name: name, Duration: time.Since(start), Bytes: n})
	}
	return ok
}

// push uploads s in the background; wait waits for every upload.
func (sh *sharing) push(s *planner.Stage) {
	if sh.sh == nil {
		return
	}
	sh.pushes.Add(1)
	go func() {
		defer sh.pushes.Done()
		start := time.Now()
		pushed, err := sh.sh.Push(sh.ctx, s)
		switch {
		case err != nil:
			sh.rep.send(Event{Kind: NotShared, Stage: s, Name: StageName(s), Err: err})
		case pushed:
			sh.rep.send(Event{Kind: Pushed, Stage: s, Name: StageName(s), Duration: time.Since(start)})
		}
	}()
}

func (sh *sharing) wait() { sh.pushes.Wait() }
