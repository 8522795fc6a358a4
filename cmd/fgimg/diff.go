package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/internal/swstack"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/stages/sandbox"
)

func cmdDiff(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg diff", flag.ContinueOnError)
	var cf configFlags
	cf.register(fs, false)
	cf.registerCacheDir(fs)
	asJSON := fs.Bool("json", false, "print the comparison as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: fgimg diff [flags] A B [PATH]\n\nCompares two images: which stage digests differ and why (the first input\nthat differs in each: a spec field such as a package list, a file's content\nor a command, or the stage below), and, when both are built, how their\nsoftware stacks differ.\n\nFlags:")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if len(pos) < 2 {
		return flagResult(usageError{"diff needs two image names: fgimg diff A B [PATH]"}, errw)
	}
	store, done, err := cf.readCache(errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	defer done()
	cfg, plan := cf.load(pos[2:], errw)
	if plan == nil {
		return exitFailed
	}
	var ims [2]*planner.Image
	for i, name := range pos[:2] {
		if ims[i] = findImage(cfg, plan, name, errw); ims[i] == nil {
			return exitFailed
		}
	}
	r := diffResult{Stages: []diffStage{}}
	var st [2]*swstack.Stack
	for i, im := range ims {
		var note string
		st[i], note, err = imageStack(ctx, store, im)
		if err != nil {
			fmt.Fprintf(errw, "fgimg: the software stack of %s: %s\n", im.Image.Name, err)
			return exitFailed
		}
		if note != "" {
			r.StackNotes = append(r.StackNotes, note)
		}
		side := diffImage{Name: im.Image.Name, ID: im.ID(), Built: st[i] != nil}
		if i == 0 {
			r.A = side
		} else {
			r.B = side
		}
	}
	for _, d := range planner.CompareChains(ims[0].Stages, ims[1].Stages) {
		r.Stages = append(r.Stages, diffStage{StageDiff: d, Why: d.Reason()})
	}
	if st[0] != nil && st[1] != nil {
		r.Stack = swstack.Diff(st[0], st[1])
	}
	if *asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
		return exitOK
	}
	writeDiff(out, r)
	return exitOK
}

// diffResult is fgimg diff's answer; its JSON is a stable interface.
type diffResult struct {
	A      diffImage   `json:"a"`
	B      diffImage   `json:"b"`
	Stages []diffStage `json:"stages"`
	// Stack is how B's software stack differs from A's, when both are built.
	Stack      *swstack.Delta `json:"stack,omitempty"`
	StackNotes []string       `json:"stack_notes,omitempty"`
}

type diffImage struct {
	Name  string        `json:"name"`
	ID    digest.Digest `json:"id"`
	Built bool          `json:"built"`
}

type diffStage struct {
	planner.StageDiff
	Why string `json:"why"`
}

// imageStack is the software stack of a built image: recorded in the
// cache by the build of one of its targets, or read now from a mount of
// the image (and recorded). It is nil, with a note saying so, for an
// image that is not built.
func imageStack(ctx context.Context, store *cache.Store, im *planner.Image) (*swstack.Stack, string, error) {
	name := im.Image.Name
	if store == nil || !store.Has(im.ID()) {
		return nil, fmt.Sprintf("%s is not built (fgimg build -only %s builds it)", name, name), nil
	}
	if st, ok, err := engine.CachedStack(store, im.ID()); ok || err != nil {
		return st, "", err
	}
	// Mounting the image needs a private mount namespace; in the calling
	// process Isolate runs fgimg again inside one and does not return.
	if err := sandbox.Isolate(); err != nil {
		return nil, "", err
	}
	e := &engine.Engine{Store: store, Runner: &engine.Overlay{Store: store}}
	st, err := e.Stack(ctx, im.Stages[len(im.Stages)-1])
	return st, "", err
}

func writeDiff(w io.Writer, r diffResult) {
	for _, s := range []struct {
		label string
		im    diffImage
	}{{"A", r.A}, {"B", r.B}} {
		built := "not built"
		if s.im.Built {
			built = "built"
		}
		fmt.Fprintf(w, "%s  %s  %s  (%s)\n", s.label, s.im.Name, planner.Short(s.im.ID), built)
	}
	fmt.Fprintf(w, "\nstages\n")
	for _, d := range r.Stages {
		kind := d.KindA
		if kind == "" || d.KindA != d.KindB && d.KindB != "" {
			kind = strings.Trim(d.KindA+"/"+d.KindB, "/")
		}
		if d.Same {
			fmt.Fprintf(w, "  %d  %-9s  same     %s\n", d.Index, kind, planner.Short(d.A))
			continue
		}
		fmt.Fprintf(w, "  %d  %-9s  differs  %s → %s  %s\n", d.Index, kind, shortOrNone(d.A), shortOrNone(d.B), d.Why)
		for _, c := range d.Changes[min(1, len(d.Changes)):] {
			fmt.Fprintf(w, "  %s  %-9s           %s\n", strings.Repeat(" ", len(fmt.Sprint(d.Index))), "", c)
		}
		if len(d.Changes) > 0 && d.InputDiffers {
			fmt.Fprintf(w, "  %s  %-9s           and its input (stage %d) differs\n", strings.Repeat(" ", len(fmt.Sprint(d.Index))), "", d.Index-1)
		}
	}
	fmt.Fprintf(w, "\nsoftware stack (B against A)\n")
	if r.Stack == nil {
		for _, n := range r.StackNotes {
			fmt.Fprintf(w, "  not compared: %s\n", n)
		}
		return
	}
	d := r.Stack
	if d.Empty() {
		fmt.Fprintf(w, "  the same\n")
		return
	}
	arch := func(a string) string {
		if a == "" {
			return ""
		}
		return " (" + a + ")"
	}
	for _, p := range d.Added {
		fmt.Fprintf(w, "  + %s %s%s\n", p.Name, p.Version, arch(p.Arch))
	}
	for _, p := range d.Removed {
		fmt.Fprintf(w, "  - %s %s%s\n", p.Name, p.Version, arch(p.Arch))
	}
	for _, c := range d.Changed {
		fmt.Fprintf(w, "  ~ %s%s %s → %s\n", c.Name, arch(c.Arch), c.From, c.To)
	}
	for _, l := range []struct {
		what         string
		added, remov []string
	}{{"kernel", d.KernelsAdded, d.KernelsRemoved}, {"service", d.ServicesAdded, d.ServicesRemoved}} {
		for _, s := range l.added {
			fmt.Fprintf(w, "  + %s %s\n", l.what, s)
		}
		for _, s := range l.remov {
			fmt.Fprintf(w, "  - %s %s\n", l.what, s)
		}
	}
}

func shortOrNone(d digest.Digest) string {
	if d == "" {
		return "(none)"
	}
	return planner.Short(d)
}
