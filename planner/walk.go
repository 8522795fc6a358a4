package planner

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrInputFailed marks a stage that was not run because a stage below it
// failed or was not run.
var ErrInputFailed = errors.New("not run: a stage below it failed")

// Walk calls fn for every stage of the plan, each after its input has
// succeeded, with at most jobs calls at once. A failure stops the stages
// above the failed one and lets independent stages finish; when ctx is
// cancelled no new stage starts. It returns the error of every stage
// that failed or was not run (nil when all succeeded).
func (p *Plan) Walk(ctx context.Context, jobs int, fn func(context.Context, *Stage) error) map[*Stage]error {
	if jobs < 1 {
		jobs = 1
	}
	above := map[*Stage][]*Stage{}
	var ready []*Stage
	for _, s := range p.Stages {
		if s.Input == nil {
			ready = append(ready, s)
		} else {
			above[s.Input] = append(above[s.Input], s)
		}
	}
	var (
		mu      sync.Mutex
		wg      sync.WaitGroup
		failed  = map[*Stage]error{}
		slots   = make(chan struct{}, jobs)
		pending = len(p.Stages)
		done    = make(chan struct{})
	)
	// skip marks s and everything above it as not run.
	var skip func(s *Stage, why error)
	skip = func(s *Stage, why error) {
		failed[s] = why
		pending--
		for _, a := range above[s] {
			skip(a, ErrInputFailed)
		}
	}
	var start func(s *Stage)
	finish := func(s *Stage, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			skip(s, err)
		} else {
			pending--
			for _, a := range above[s] {
				start(a)
			}
		}
		if pending == 0 {
			close(done)
		}
	}
	// start runs s in its own goroutine once a slot is free; called with mu held.
	start = func(s *Stage) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				finish(s, fmt.Errorf("not run: %w", context.Cause(ctx)))
				return
			}
			if err := ctx.Err(); err != nil {
				<-slots
				finish(s, fmt.Errorf("not run: %w", context.Cause(ctx)))
				return
			}
			err := fn(ctx, s)
			<-slots
			finish(s, err)
		}()
	}
	mu.Lock()
	if pending == 0 {
		close(done)
	}
	for _, s := range ready {
		start(s)
	}
	mu.Unlock()
	<-done
	wg.Wait()
	if len(failed) == 0 {
		return nil
	}
	return failed
}
