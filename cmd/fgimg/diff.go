package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/internal/swstack"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/stages/sandbox"
)

func cmdDiff(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg diff", flag.ContinueOnError)
	var cf configFlags
	cf.register(fs, false)
	cf.registerCacheDir(fs)
	asJSON := fs.Bool("json", false, "print the comparison as JSON")
	last := fs.Bool("last", false, "compare image NAME as the templates define it now with its last recorded build: why it is not cached")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: fgimg diff [flags] A B [PATH]
       fgimg diff -last NAME [PATH]

Compares two images: which stage digests differ and why (the first input
that differs in each: a spec field such as a package list, a file's content
or a command, or the stage below), which variables and template files
differ, and how their software stacks differ.

A and B are image names in the templates, or builds the catalog records,
by ID (a digest or a unique prefix of one, as fgimg images prints it,
optionally followed by /NAME). With -last, A is the newest recorded build
of image NAME and B is NAME as the templates define it now: the answer to
"why is this stage not cached?".

Flags:`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	n := 2
	if *last {
		n = 1
	}
	if len(pos) < n {
		if *last {
			return flagResult(usageError{"diff -last needs an image name: fgimg diff -last NAME [PATH]"}, errw)
		}
		return flagResult(usageError{"diff needs two images: fgimg diff A B [PATH]"}, errw)
	}
	store, done, err := cf.readCache(errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	defer done()
	var cat *catalog.Catalog
	if store != nil {
		if cat, err = catalog.Open(store); err != nil {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
			return exitFailed
		}
		defer cat.Close()
	}
	refs, paths := pos[:n], pos[n:]
	if *last {
		refs = []string{refs[0], refs[0]}
	}
	// The recorded sides first: two of them need no templates.
	var sides [2]*diffSide
	for i, ref := range refs {
		if *last && i == 0 {
			var e *catalog.Entry
			if cat != nil {
				e, err = cat.Latest(ref, catalog.TypeImage)
			}
			if err != nil {
				fmt.Fprintf(errw, "fgimg: %s\n", err)
				return exitFailed
			}
			if e == nil {
				fmt.Fprintf(errw, "fgimg: the catalog records no build of image %q: nothing to compare with\n", ref)
				return exitFailed
			}
			sides[i] = recordedSide(e)
		} else if looksLikeID(ref) && cat != nil {
			if e, err := cat.Find(ref); err == nil {
				sides[i] = recordedSide(e)
			}
		}
	}
	if sides[0] == nil || sides[1] == nil {
		cfg, plan := cf.load(paths, errw)
		if plan == nil {
			return exitFailed
		}
		for i, ref := range refs {
			if sides[i] != nil {
				continue
			}
			im := findImage(cfg, plan, ref, errw)
			if im == nil {
				return exitFailed
			}
			if sides[i], err = plannedSide(ctx, store, cfg, im); err != nil {
				fmt.Fprintf(errw, "fgimg: the software stack of %s: %s\n", im.Image.Name, err)
				return exitFailed
			}
		}
	}
	r := compareSides(sides[0], sides[1])
	if *asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
		return exitOK
	}
	writeDiff(out, r)
	return exitOK
}

// looksLikeID says whether ref is written as a catalog ID: a digest or
// a prefix of one of at least 6 hex digits, optionally /NAME.
func looksLikeID(ref string) bool {
	hex, _, _ := strings.Cut(strings.TrimPrefix(ref, "sha256:"), "/")
	return strings.HasPrefix(ref, "sha256:") || len(hex) >= 6 && strings.Trim(hex, "0123456789abcdef") == ""
}

// diffSide is one side of a comparison: an image as the templates
// define it, or a build the catalog records.
type diffSide struct {
	img   diffImage
	chain []planner.ChainStage
	stack *swstack.Stack
	note  string // why there is no stack
	vars  map[string]json.RawMessage
	tmpls []catalog.Template // nil: not known (a planned side is compared by its variables)
}

func plannedSide(ctx context.Context, store *cache.Store, cfg *lang.Config, im *planner.Image) (*diffSide, error) {
	st, note, err := imageStack(ctx, store, im)
	if err != nil {
		return nil, err
	}
	return &diffSide{
		img:   diffImage{Name: im.Image.Name, ID: im.ID(), Built: st != nil},
		chain: planner.ChainOf(im.Stages),
		stack: st, note: note,
		vars:  variableValues(cfg),
		tmpls: templateDigests(cfg),
	}, nil
}

func recordedSide(e *catalog.Entry) *diffSide {
	created := e.Created
	s := &diffSide{
		img:   diffImage{Name: e.Name, ID: e.ID, Built: e.Status != catalog.StatusPurged, Recorded: &created, Status: e.Status},
		chain: entryChain(e),
		stack: e.Stack,
		vars:  e.Variables,
		tmpls: e.Templates,
	}
	if s.stack == nil {
		s.note = fmt.Sprintf("the build of %s %s recorded no software stack", e.Name, planner.Short(e.ID))
		if e.StackError != "" {
			s.note += ": " + e.StackError
		}
	}
	return s
}

// entryChain is a recorded entry's stages as the planner compares them.
func entryChain(e *catalog.Entry) []planner.ChainStage {
	out := make([]planner.ChainStage, len(e.Stages))
	for i, s := range e.Stages {
		out[i] = planner.ChainStage{Digest: s.Digest, Kind: s.Kind, Spec: s.Spec}
		if len(s.Inputs) > 0 {
			out[i].Input = s.Inputs[0]
		}
	}
	return out
}

func compareSides(a, b *diffSide) diffResult {
	r := diffResult{A: a.img, B: b.img, Stages: []diffStage{}}
	for _, d := range planner.CompareStageChains(a.chain, b.chain) {
		r.Stages = append(r.Stages, diffStage{StageDiff: d, Why: d.Reason()})
	}
	if a.img.Recorded != nil || b.img.Recorded != nil {
		r.Variables = compareVariables(a.vars, b.vars)
		r.Templates = compareTemplates(a.tmpls, b.tmpls)
	}
	if a.stack != nil && b.stack != nil {
		r.Stack = swstack.Diff(a.stack, b.stack)
	}
	for _, n := range []string{a.note, b.note} {
		if n != "" {
			r.StackNotes = append(r.StackNotes, n)
		}
	}
	return r
}

// compareVariables lists the variables whose values differ, as var.NAME.
func compareVariables(a, b map[string]json.RawMessage) []planner.SpecChange {
	str := func(m map[string]json.RawMessage) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = string(v)
		}
		return out
	}
	return compareMaps("var.", str(a), str(b))
}

// compareTemplates lists the template files whose content differs (or
// that only one side has), by path.
func compareTemplates(a, b []catalog.Template) []planner.SpecChange {
	byPath := func(l []catalog.Template) map[string]string {
		out := map[string]string{}
		for _, t := range l {
			out[t.Path] = string(t.Digest)
		}
		return out
	}
	return compareMaps("", byPath(a), byPath(b))
}

// compareMaps lists the keys whose values differ between a and b (""
// for absent), in key order, each as prefix+key.
func compareMaps(prefix string, a, b map[string]string) []planner.SpecChange {
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var out []planner.SpecChange
	for _, k := range keys {
		if a[k] != b[k] {
			out = append(out, planner.SpecChange{Path: prefix + k, From: a[k], To: b[k]})
		}
	}
	return out
}

// diffResult is fgimg diff's answer; its JSON is a stable interface.
type diffResult struct {
	A      diffImage   `json:"a"`
	B      diffImage   `json:"b"`
	Stages []diffStage `json:"stages"`
	// Variables and Templates differ between a recorded build and the
	// other side: the inputs behind the stages that differ.
	Variables []planner.SpecChange `json:"variables,omitempty"`
	Templates []planner.SpecChange `json:"templates,omitempty"`
	// Stack is how B's software stack differs from A's, when both are known.
	Stack      *swstack.Delta `json:"stack,omitempty"`
	StackNotes []string       `json:"stack_notes,omitempty"`
}

type diffImage struct {
	Name  string        `json:"name"`
	ID    digest.Digest `json:"id"`
	Built bool          `json:"built"`
	// Recorded is when a recorded build was made; nil for an image of
	// the templates. Status is its catalog status.
	Recorded *time.Time `json:"recorded,omitempty"`
	Status   string     `json:"status,omitempty"`
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
		if s.im.Recorded != nil {
			built = "recorded build of " + s.im.Recorded.Local().Format("2006-01-02 15:04:05") + ", " + s.im.Status
		}
		fmt.Fprintf(w, "%s  %s  %s  (%s)\n", s.label, s.im.Name, planner.Short(s.im.ID), built)
	}
	if len(r.Variables)+len(r.Templates) > 0 {
		fmt.Fprintf(w, "\ninputs\n")
		for _, c := range r.Variables {
			fmt.Fprintf(w, "  %s\n", c)
		}
		for _, c := range r.Templates {
			fmt.Fprintf(w, "  template %s\n", c)
		}
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
