package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cheggaaa/pb/v3"
	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/internal/bytesize"
	"golang.org/x/term"
)

// progress shows a build: a bar on a terminal, one clean line per stage
// start and end in a log, or one JSON event per line with --json.
type progress struct {
	mu      sync.Mutex
	w       io.Writer // human output (stderr)
	jsonOut io.Writer // --json: events go here (stdout)
	bar     *pb.ProgressBar
	total   int
	done    int
	counts  map[engine.EventKind]int
	running map[string]time.Time
	failed  []*engine.StageError
	// notShared are the shared repository's failures, said again at the end.
	notShared []string
	start     time.Time
}

func newProgress(w io.Writer, asJSON bool, stdout io.Writer, total int) *progress {
	p := &progress{w: w, total: total, counts: map[engine.EventKind]int{}, running: map[string]time.Time{}, start: time.Now()}
	if asJSON {
		p.jsonOut = stdout
		return p
	}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		p.bar = pb.New(total).SetTemplateString(`{{counters . }} {{bar . "[" "=" ">" " " "]"}} {{etime . }} {{string . "running"}}`)
		p.bar.SetWriter(w).SetRefreshRate(200 * time.Millisecond)
		p.bar.Start()
	}
	return p
}

// line prints a line, above the bar on a terminal.
func (p *progress) line(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if p.bar != nil {
		fmt.Fprintf(p.w, "\r\033[K%s\n", msg)
		p.bar.Write()
		return
	}
	fmt.Fprintln(p.w, msg)
}

func (p *progress) event(ev engine.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[ev.Kind]++
	switch ev.Kind {
	case engine.Exported, engine.Pushed, engine.NotShared: // not nodes of the plan
	case engine.Start:
		p.running[ev.Name] = time.Now()
	default:
		p.done++
		delete(p.running, ev.Name)
	}
	var se *engine.StageError
	if ev.Kind == engine.Failed && errors.As(ev.Err, &se) {
		p.failed = append(p.failed, se)
	}
	if ev.Kind == engine.NotShared {
		p.notShared = append(p.notShared, fmt.Sprintf("%s: %v", ev.Name, ev.Err))
	}
	if p.jsonOut != nil {
		p.emitJSON(ev)
		return
	}
	counter := fmt.Sprintf("[%*d/%d]", len(fmt.Sprint(p.total)), p.done, p.total)
	switch ev.Kind {
	case engine.Start:
		p.line("%s start    %s", strings.Repeat(" ", len(counter)), ev.Name)
	case engine.Cached:
		p.line("%s cached   %s", counter, ev.Name)
	case engine.Built:
		p.line("%s built    %s  %s%s", counter, ev.Name, ev.Duration.Round(100*time.Millisecond), sizeNote(ev.Bytes))
	case engine.Exported:
		p.line("%s wrote    %s  → %s", strings.Repeat(" ", len(counter)), ev.Name, ev.Path)
	case engine.Pulled:
		p.line("%s pulled   %s  %s%s", counter, ev.Name, ev.Duration.Round(100*time.Millisecond), sizeNote(ev.Bytes))
	case engine.Pushed:
		p.line("%s pushed   %s  %s", strings.Repeat(" ", len(counter)), ev.Name, ev.Duration.Round(100*time.Millisecond))
	case engine.NotShared:
		p.line("%s not shared  %s: %v", strings.Repeat(" ", len(counter)), ev.Name, ev.Err)
	case engine.Failed:
		p.line("%s FAILED   %s  %s", counter, ev.Name, ev.Duration.Round(100*time.Millisecond))
	case engine.NotRun:
		p.line("%s not run  %s (a stage below it failed)", counter, ev.Name)
	}
	if p.bar != nil {
		p.bar.SetCurrent(int64(p.done))
		names := make([]string, 0, len(p.running))
		for n := range p.running {
			names = append(names, n)
		}
		p.bar.Set("running", strings.Join(names, ", "))
	}
}

func sizeNote(n int64) string {
	if n == 0 {
		return ""
	}
	return "  " + bytesize.Format(n)
}

type jsonEvent struct {
	Event      string `json:"event"`
	Name       string `json:"name,omitempty"`
	Stage      string `json:"stage,omitempty"`
	Kind       string `json:"kind,omitempty"`
	Image      string `json:"image,omitempty"`
	Target     string `json:"target,omitempty"`
	DurationMS int64  `json:"duration_ms,omitempty"`
	Bytes      int64  `json:"bytes,omitempty"`
	Path       string `json:"path,omitempty"`
	Error      string `json:"error,omitempty"`
	Log        string `json:"log,omitempty"`
}

func (p *progress) emitJSON(ev engine.Event) {
	j := jsonEvent{Event: string(ev.Kind), Name: ev.Name, DurationMS: ev.Duration.Milliseconds(), Bytes: ev.Bytes, Path: ev.Path}
	if s := ev.Stage; s != nil {
		j.Stage, j.Kind = s.Digest.String(), s.Kind()
		if s.Image != nil {
			j.Image = s.Image.Name
		}
		j.Target = ev.Target
	}
	if ev.Err != nil {
		j.Error = ev.Err.Error()
		var se *engine.StageError
		if errors.As(ev.Err, &se) {
			j.Log = se.Log
		}
	}
	b, _ := json.Marshal(j)
	fmt.Fprintf(p.jsonOut, "%s\n", b)
}

// finish prints the failures in full and a summary line.
func (p *progress) finish(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		p.bar.Finish()
	}
	elapsed := time.Since(p.start).Round(100 * time.Millisecond)
	if p.jsonOut != nil {
		j := map[string]any{"event": "summary", "built": p.counts[engine.Built], "cached": p.counts[engine.Cached],
			"pulled": p.counts[engine.Pulled], "pushed": p.counts[engine.Pushed], "not_shared": p.counts[engine.NotShared],
			"failed": p.counts[engine.Failed], "not_run": p.counts[engine.NotRun], "duration_ms": time.Since(p.start).Milliseconds()}
		if err != nil {
			j["error"] = err.Error()
		}
		b, _ := json.Marshal(j)
		fmt.Fprintf(p.jsonOut, "%s\n", b)
	}
	for _, se := range p.failed {
		fmt.Fprintf(p.w, "\nError: %s failed\n\n", engine.StageName(se.Stage))
		where := "stage " + se.Stage.Digest.String()
		if se.Stage.Image != nil {
			where = fmt.Sprintf("image %q, %s stage %s", se.Stage.Image.Name, se.Stage.Kind(), se.Stage.Digest)
		}
		fmt.Fprintf(p.w, "  %s\n  %v\n", where, se.Err)
		if len(se.Tail) > 0 {
			fmt.Fprintf(p.w, "\n  Last %d lines of its output:\n", len(se.Tail))
			for _, l := range se.Tail {
				fmt.Fprintf(p.w, "  │ %s\n", l)
			}
		}
		if se.Log != "" {
			fmt.Fprintf(p.w, "\n  Full log: %s\n", se.Log)
		}
	}
	var f *engine.Failure
	if errors.As(err, &f) && f.Cancelled {
		fmt.Fprintf(p.w, "\nInterrupted after %s: the cache keeps every finished stage.\n", elapsed)
	}
	if len(p.notShared) > 0 {
		fmt.Fprintf(p.w, "\nThe shared repository failed %d times; the build went on locally, and this was not shared:\n", len(p.notShared))
		for _, m := range p.notShared {
			fmt.Fprintf(p.w, "  %s\n", m)
		}
	}
	pulled := ""
	if n := p.counts[engine.Pulled]; n > 0 || p.counts[engine.Pushed] > 0 {
		pulled = fmt.Sprintf(", %d pulled, %d pushed", n, p.counts[engine.Pushed])
	}
	fmt.Fprintf(p.w, "\nBuild: %d built, %d cached%s, %d failed, %d not run in %s.\n",
		p.counts[engine.Built], p.counts[engine.Cached], pulled, p.counts[engine.Failed], p.counts[engine.NotRun], elapsed)
}
