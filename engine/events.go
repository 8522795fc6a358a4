package engine

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/fgimg/fgimg/planner"
)

// EventKind says what happened to a stage.
type EventKind string

const (
	Start    EventKind = "start"
	Cached   EventKind = "cached"
	Built    EventKind = "built"
	Failed   EventKind = "failed"
	NotRun   EventKind = "not-run"
	Exported EventKind = "exported" // a target's artifacts were written to OUT
	// Pulled: the stage came from the shared repository, not built.
	Pulled EventKind = "pulled"
	// Pushed: the stage's result was stored in the shared repository
	// (not a node of the plan).
	Pushed EventKind = "pushed"
	// NotShared: a lookup, pull or push of the shared repository failed;
	// Err says why. The build goes on (not a node of the plan).
	NotShared EventKind = "not-shared"
)

// Event is one step of a build, for progress output.
type Event struct {
	Kind     EventKind
	Stage    *planner.Stage
	Name     string // "hpc: packages", "target hpc-netboot"
	Duration time.Duration
	Bytes    int64 // layer or artifact bytes written
	Err      error
	Path     string // Exported: the target's output directory
	Target   string // Exported: the target's name
}

// StageName names a stage for people: its image and kind, or its target.
func StageName(s *planner.Stage) string {
	switch {
	case s.Node == planner.TargetWrite && len(s.Targets) > 0:
		var names []string
		for _, t := range s.Targets {
			names = append(names, t.Target.Name)
		}
		return "target " + strings.Join(names, ", ")
	case s.Image != nil:
		return s.Image.Name + ": " + s.Kind()
	}
	return s.Kind() + " " + planner.Short(s.Digest)
}

type reporter struct {
	mu sync.Mutex
	fn func(Event)
}

func newReporter(fn func(Event)) *reporter { return &reporter{fn: fn} }

func (r *reporter) send(ev Event) {
	if r.fn == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fn(ev)
}

// StageError is a stage that failed: why, and where its full log is.
type StageError struct {
	Stage *planner.Stage
	Err   error
	Log   string   // the full log
	Tail  []string // its last lines
}

func (e *StageError) Error() string {
	return fmt.Sprintf("%s (stage %s) failed: %v", StageName(e.Stage), planner.Short(e.Stage.Digest), e.Err)
}

func (e *StageError) Unwrap() error { return e.Err }

// Failure is a build in which stages failed or were not run.
type Failure struct {
	Failed    []StageError
	NotRun    []*planner.Stage
	Cancelled bool
}

func (f *Failure) Error() string {
	var parts []string
	for _, e := range f.Failed {
		parts = append(parts, e.Error())
	}
	msg := strings.Join(parts, "; ")
	if len(f.NotRun) > 0 {
		msg += fmt.Sprintf("; %d stages above it not run", len(f.NotRun))
	}
	if f.Cancelled {
		msg = "interrupted: " + msg
	}
	return msg
}

// tail returns the last n lines of a file.
func tail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return lines
}
