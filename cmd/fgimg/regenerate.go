package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/engine/shared"
	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/internal/outdir"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/stages/sandbox"
)

// regenResult is what `fgimg regenerate` found, and its --json output.
type regenResult struct {
	ID       digest.Digest `json:"id"`
	Name     string        `json:"name"`
	Type     string        `json:"type"`
	Verified bool          `json:"verified"`
	Status   string        `json:"status"`
	// From says where the templates came from: "git <commit>" or "files".
	From   string       `json:"from"`
	Stages []regenStage `json:"stages"`
	// Difference is the first stage that differs, in words.
	Difference string      `json:"difference,omitempty"`
	Artifacts  []regenBlob `json:"artifacts,omitempty"`
	Kept       []string    `json:"kept,omitempty"` // where the copies of a result not reproduced are
	// Unreproduced names the first stage whose bytes differ from the
	// recorded ones; Files every file of the root filesystem that
	// differs between the recorded and the new artifacts (when the
	// recorded ones are still at their location and are archives);
	// FilesNote says why Files could not be listed.
	Unreproduced string      `json:"unreproduced,omitempty"`
	Files        []regenFile `json:"files,omitempty"`
	FilesNote    string      `json:"files_note,omitempty"`
	Out          string      `json:"out,omitempty"` // where a verified target's artifacts were exported
	Warnings     []string    `json:"warnings,omitempty"`
	entry        *catalog.Entry
	cat          *catalog.Catalog
	store        *cache.Store
	shared       *shared.Repo // --remote; nil: none
}

type regenStage struct {
	Index    int           `json:"index"`
	Kind     string        `json:"kind"`
	Recorded digest.Digest `json:"recorded"`
	Now      digest.Digest `json:"now,omitempty"`
	Same     bool          `json:"same"`
}

// regenBlob is one artifact (a target's) or layer (an image's last stage).
type regenBlob struct {
	Path     string        `json:"path"`
	Recorded digest.Digest `json:"recorded"`
	Now      digest.Digest `json:"now,omitempty"`
	Same     bool          `json:"same"`
}

func cmdRegenerate(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg regenerate", flag.ContinueOnError)
	var cf configFlags
	var rf remoteFlags
	cf.register(fs, false)
	cf.registerCacheDir(fs)
	rf.register(fs)
	outDir := fs.String("o", "out", "export a verified target's artifacts to `DIR`/<target>/")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	jobs := fs.Int("j", runtime.NumCPU(), "build at most `N` stages at once")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: fgimg regenerate [flags] ID|NAME

Rebuilds a catalog entry (an image or a target, purged or not) from its
recorded templates — from the recorded git commit, through a temporary
git worktree, when they were committed and clean — with its recorded
SOURCE_DATE_EPOCH, taking every stage still cached, and verifies it:
every stage digest and every artifact digest must equal the recorded
ones. Only then is the entry marked "regenerated, verified" and a
target's artifacts exported to OUT/<target>/. Exits 0 only when verified.
The build's -var and -var-file arguments are given again, as recorded,
unless -var or -var-file is given.

Flags:`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if len(pos) != 1 {
		return flagResult(usageError{"fgimg regenerate takes one ID or NAME"}, errw)
	}
	if *jobs < 1 {
		return flagResult(usageError{"-j must be at least 1"}, errw)
	}
	if err := sandbox.Isolate(); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	store, cat, e, err := openEntry(cf.cacheDir, pos[0], errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	defer store.Close()
	defer cat.Close()
	if err := outdir.Outside(*outDir, store.Dir()); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	r := &regenResult{ID: e.ID, Name: e.Name, Type: e.Type, Status: e.Status, Stages: []regenStage{}, entry: e, cat: cat, store: store}
	if r.shared, err = rf.shared(store); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	code := r.run(ctx, &cf, *outDir, *jobs, errw)
	if code == exitFailed && r.From == "" {
		return code // failed before building: the error is told
	}
	if *asJSON {
		b, _ := json.MarshalIndent(r, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
	} else {
		r.print(out)
	}
	return code
}

// run regenerates r.entry; errors are printed to errw.
func (r *regenResult) run(ctx context.Context, cf *configFlags, outDir string, jobs int, errw io.Writer) int {
	e := r.entry
	fail := func(format string, args ...any) int {
		fmt.Fprintf(errw, "fgimg: regenerating %s %s: %s\n", e.Name, planner.Short(e.ID), fmt.Sprintf(format, args...))
		return exitFailed
	}
	paths, varFiles, from, cleanup, warnings, err := regenTemplates(e)
	if err != nil {
		return fail("%s", err)
	}
	defer cleanup()
	for _, w := range warnings {
		fmt.Fprintf(errw, "fgimg: warning: %s\n", w)
	}
	r.Warnings = warnings
	defer cf.useCache(r.store)()
	cf.only = []string{e.Name}
	if len(cf.vars) == 0 {
		cf.vars = varArgs(e.Vars)
		for i, v := range cf.vars {
			if p, ok := varFiles[v.File]; ok {
				cf.vars[i].File = p
			}
		}
	}
	cfg, plan := cf.load(paths, errw)
	if plan == nil {
		return fail("the templates do not plan")
	}
	chain, target := regenChain(plan, e)
	if chain == nil {
		return fail("the templates (%s) define no %s %q", from, e.Type, e.Name)
	}
	var epoch *time.Time
	if e.SourceDateEpoch != nil {
		t := time.Unix(*e.SourceDateEpoch, 0).UTC()
		epoch = &t
	}
	// The scratch OUT is beside OUT: a result not reproduced stays
	// there, where the user looks.
	absOut, err := filepath.Abs(outDir)
	if err == nil {
		err = os.MkdirAll(filepath.Dir(absOut), 0o755)
	}
	var scratch string
	if err == nil {
		scratch, err = os.MkdirTemp(filepath.Dir(absOut), ".fgimg-regenerate-"+e.Name+"-")
	}
	if err != nil {
		return fail("%s", err)
	}
	keepScratch := false
	defer func() {
		if !keepScratch {
			os.RemoveAll(scratch)
		}
	}()
	eng := func(out string) *engine.Engine {
		e := &engine.Engine{
			Store:  r.store,
			Runner: &engine.Overlay{Store: r.store, Epoch: epoch, StageTimeout: -1},
			Jobs:   jobs,
			Out:    out,
			Epoch:  epoch,
			Report: newProgress(errw, false, io.Discard, len(plan.Stages)).event,
			LogDir: filepath.Join(r.store.Dir(), "logs"),
		}
		if r.shared != nil {
			e.Shared = r.shared
		}
		return e
	}
	r.From = from
	// The stage digests first: they are known before anything is built.
	for i, st := range e.Stages {
		s := regenStage{Index: i, Kind: st.Kind, Recorded: st.Digest}
		if i < len(chain) {
			s.Now, s.Same = chain[i].Digest, chain[i].Digest == st.Digest
		}
		if !s.Same && r.Difference == "" {
			r.Difference = stageDifference(e, i, chain, cfg)
		}
		r.Stages = append(r.Stages, s)
	}
	if len(chain) > len(e.Stages) && r.Difference == "" {
		r.Difference = fmt.Sprintf("stage %d (%s) is new: the templates have more stages than recorded", len(e.Stages), chain[len(e.Stages)].Kind())
	}
	if r.Difference != "" {
		return exitFailed
	}
	if err := eng(scratch).Build(ctx, plan); err != nil {
		var f *engine.Failure
		if !errors.As(err, &f) {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
		}
		return fail("the build failed")
	}
	// Then the bytes: a target's artifacts, an image's layers.
	same := true
	if target != nil {
		rec, err := r.store.Record(target.Write.Digest)
		if err != nil {
			return fail("%s", err)
		}
		now := map[string]digest.Digest{}
		for _, o := range rec.Outputs {
			now[o.Name] = o.Digest
		}
		for _, a := range e.Artifacts {
			b := regenBlob{Path: a.Path, Recorded: a.Digest, Now: now[a.Path], Same: now[a.Path] == a.Digest}
			same = same && b.Same
			r.Artifacts = append(r.Artifacts, b)
		}
	} else {
		for i, st := range e.Stages {
			rec, err := r.store.Record(st.Digest)
			if err != nil {
				return fail("%s", err)
			}
			for j, d := range st.Outputs {
				b := regenBlob{Path: fmt.Sprintf("stage %d (%s) layer", i, st.Kind), Recorded: d, Same: false}
				if j < len(rec.Outputs) {
					b.Now = rec.Outputs[j].Digest
					b.Same = b.Now == d
				}
				same = same && b.Same
				r.Artifacts = append(r.Artifacts, b)
			}
		}
		if len(r.Artifacts) == 0 {
			return fail("the entry records no layer digests (recorded by an older fgimg): its bytes cannot be verified")
		}
	}
	if !same {
		keepScratch = true
		r.Unreproduced = r.firstUnreproduced()
		recorded := ""
		r.Kept, recorded = r.keptCopies(scratch, target)
		r.Files, r.FilesNote = r.differingFiles(filepath.Join(scratch, e.Name), recorded)
		return exitFailed
	}
	// Verified: export as build does, from the stages now all cached.
	if target != nil {
		if err := eng(outDir).Build(ctx, plan); err != nil {
			return fail("exporting: %s", err)
		}
		if abs, err := filepath.Abs(filepath.Join(outDir, e.Name)); err == nil {
			r.Out = abs
			if !slices.Contains(e.Locations, abs) {
				e.Locations = append(e.Locations, abs)
			}
		}
	}
	e.Status, e.Purged = catalog.StatusRegenerated, nil
	if err := r.cat.Update(e); err != nil {
		return fail("%s", err)
	}
	r.Status, r.Verified = e.Status, true
	return exitOK
}

// regenTemplates returns the template files to regenerate e from: a
// detached git worktree of the recorded commit when the templates were
// committed and clean, else the recorded files as they are now; and
// where each recorded -var-file is in the same place (the worktree's
// copy of one in git).
func regenTemplates(e *catalog.Entry) (paths []string, varFiles map[string]string, from string, cleanup func(), warnings []string, err error) {
	varFiles = map[string]string{}
	isVarFile := map[string]bool{}
	for _, v := range e.Vars {
		if v.File != "" {
			isVarFile[v.File] = true
		}
	}
	cleanup = func() {}
	if len(e.Templates) == 0 {
		return nil, nil, "", cleanup, nil, errors.New("the entry records no template files")
	}
	if g := e.Git; g != nil && !g.Dirty && g.Commit != "" {
		tmp, err := os.MkdirTemp("", "fgimg-regenerate-git-")
		if err != nil {
			return nil, nil, "", cleanup, nil, err
		}
		wt := filepath.Join(tmp, "tree")
		if msg, err := exec.Command("git", "-C", g.Root, "worktree", "add", "--detach", wt, g.Commit).CombinedOutput(); err != nil {
			os.RemoveAll(tmp)
			return nil, nil, "", cleanup, nil, fmt.Errorf("git worktree add of commit %s in %s: %s: %s", g.Commit, g.Root, err, strings.TrimSpace(string(msg)))
		}
		cleanup = func() {
			exec.Command("git", "-C", g.Root, "worktree", "remove", "--force", wt).Run()
			os.RemoveAll(tmp)
			exec.Command("git", "-C", g.Root, "worktree", "prune").Run()
		}
		for _, t := range e.Templates {
			rel, err := filepath.Rel(g.Root, t.Path)
			if isVarFile[t.Path] && (err != nil || strings.HasPrefix(rel, "..")) {
				varFiles[t.Path] = t.Path // outside git: as it is now
				continue
			}
			if err != nil || strings.HasPrefix(rel, "..") {
				cleanup()
				return nil, nil, "", func() {}, nil, fmt.Errorf("template %s is outside the git tree %s", t.Path, g.Root)
			}
			if isVarFile[t.Path] {
				varFiles[t.Path] = filepath.Join(wt, rel)
				continue
			}
			paths = append(paths, filepath.Join(wt, rel))
		}
		return paths, varFiles, "git " + g.Commit, cleanup, nil, nil
	}
	why := "were not in git"
	if e.Git != nil {
		why = "differed from git commit " + e.Git.Commit
	}
	warnings = append(warnings, fmt.Sprintf("the templates %s when %s was built: regenerating from the files as they are now", why, e.Name))
	for _, t := range e.Templates {
		b, err := os.ReadFile(t.Path)
		if err != nil {
			return nil, nil, "", cleanup, nil, fmt.Errorf("template %s: %w", t.Path, err)
		}
		if digest.FromBytes(b) != t.Digest {
			warnings = append(warnings, fmt.Sprintf("template %s changed since the build", t.Path))
		}
		if !isVarFile[t.Path] {
			paths = append(paths, t.Path)
		}
	}
	return paths, varFiles, "files", cleanup, warnings, nil
}

// regenChain is the chain of stages of e's image or target in plan,
// origin first (a target's write last), and the target.
func regenChain(plan *planner.Plan, e *catalog.Entry) ([]*planner.Stage, *planner.Target) {
	if e.Type == catalog.TypeTarget {
		for _, t := range plan.Targets {
			if t.Target.Name == e.Name {
				return append(t.Chain(), t.Write), t
			}
		}
		return nil, nil
	}
	for _, im := range plan.Images {
		if im.Image.Name == e.Name {
			return im.Stages, nil
		}
	}
	return nil, nil
}

// stageDifference names the first stage of the chain whose digest is
// not the recorded one and why, as diff does: another kind, the first
// spec field that differs, or another input stage; and the variables
// that differ from the recorded build's.
func stageDifference(e *catalog.Entry, i int, chain []*planner.Stage, cfg *lang.Config) string {
	rec := e.Stages[i]
	head := fmt.Sprintf("stage %d (%s) differs: recorded %s", i, rec.Kind, planner.Short(rec.Digest))
	if i >= len(chain) {
		return head + ", now absent: the templates have fewer stages than recorded"
	}
	d := planner.CompareStageChains(entryChain(e)[i:i+1], planner.ChainOf(chain[i:i+1]))[0]
	d.Index = i
	why := head + ", now " + planner.Short(chain[i].Digest) + ": " + d.Reason()
	if d.SpecUnknown && len(d.Changes) == 0 {
		why = head + ", now " + planner.Short(chain[i].Digest) + ": its " + rec.Kind + " spec differs (the templates or the files they read changed)"
	}
	if vs := compareVariables(e.Variables, variableValues(cfg)); len(vs) > 0 && e.Variables != nil {
		var parts []string
		for _, v := range vs {
			parts = append(parts, v.String())
		}
		why += "; variables differ: " + strings.Join(parts, ", ")
	}
	return why
}

// keptCopies says where the two copies of a result not reproduced
// are; recorded is the directory of the recorded copy, "" when gone.
func (r *regenResult) keptCopies(scratch string, target *planner.Target) (kept []string, recorded string) {
	if target == nil {
		return append(kept, "the new layers are in the cache under their stage digests; the recorded ones are gone when purged"), ""
	}
	e := r.entry
	kept = append(kept, "new: "+filepath.Join(scratch, e.Name))
	for _, loc := range e.Locations {
		if fi, err := os.Stat(loc); err == nil && fi.IsDir() && recordedCopy(loc, e.Artifacts) {
			return append(kept, "recorded: "+loc), loc
		}
	}
	return append(kept, "the recorded copy is gone (purged and no longer at its locations)"), ""
}

// regenFile is one file of the root filesystem that differs between the
// recorded artifact and the regenerated one.
type regenFile struct {
	Artifact string `json:"artifact"`
	layer.FileDiff
}

// firstUnreproduced names the first stage of the entry whose stored
// output (layer or artifacts) is not the recorded one.
func (r *regenResult) firstUnreproduced() string {
	for i, st := range r.entry.Stages {
		rec, err := r.store.Record(st.Digest)
		if err != nil {
			continue
		}
		for j, d := range st.Outputs {
			if j < len(rec.Outputs) && rec.Outputs[j].Digest != d {
				return fmt.Sprintf("stage %d (%s) %s made other bytes from the same inputs: %s was %s, now %s",
					i, st.Kind, planner.Short(st.Digest), rec.Outputs[j].Name, planner.Short(d), planner.Short(rec.Outputs[j].Digest))
			}
		}
	}
	return ""
}

// differingFiles lists every file that differs between each artifact
// of the recorded copy (in dir recorded) and of the new one (in dir
// now) that is an archive of the root filesystem (tar, plain or
// compressed); note says why nothing could be listed.
func (r *regenResult) differingFiles(now, recorded string) (files []regenFile, note string) {
	if recorded == "" {
		return nil, "the recorded artifacts are gone: the files that differ cannot be listed (fgimg keep keeps an entry from purge)"
	}
	compared := 0
	for _, a := range r.Artifacts {
		if a.Same {
			continue
		}
		diffs, err := diffArchiveFiles(filepath.Join(recorded, a.Path), filepath.Join(now, a.Path))
		if err != nil {
			continue // not an archive (a disk image): diffoscope reads those
		}
		compared++
		for _, d := range diffs {
			files = append(files, regenFile{Artifact: a.Path, FileDiff: d})
		}
	}
	if compared == 0 {
		return nil, fmt.Sprintf("no differing artifact is an archive fgimg can read: compare them with diffoscope %s %s", recorded, now)
	}
	return files, ""
}

func diffArchiveFiles(a, b string) ([]layer.FileDiff, error) {
	fa, err := os.Open(a)
	if err != nil {
		return nil, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	return layer.DiffArchives(fa, fb)
}

// recordedCopy reports whether dir holds the recorded artifacts.
func recordedCopy(dir string, arts []catalog.Artifact) bool {
	for _, a := range arts {
		f, err := os.Open(filepath.Join(dir, a.Path))
		if err != nil {
			return false
		}
		d, err := digest.FromReader(f)
		f.Close()
		if err != nil || d != a.Digest {
			return false
		}
	}
	return true
}

func (r *regenResult) print(out io.Writer) {
	fmt.Fprintf(out, "%s %s %s from %s\n", r.Type, r.Name, planner.Short(r.ID), r.From)
	for _, s := range r.Stages {
		mark := "same"
		if !s.Same {
			mark = "DIFFERS"
		}
		fmt.Fprintf(out, "  stage %d %-10s %s  %s\n", s.Index, s.Kind, planner.Short(s.Recorded), mark)
	}
	if r.Difference != "" {
		fmt.Fprintf(out, "Not regenerated: %s\n", r.Difference)
		return
	}
	var differ []string
	for _, a := range r.Artifacts {
		if !a.Same {
			differ = append(differ, fmt.Sprintf("  %s: recorded %s, now %s", a.Path, a.Recorded, a.Now))
		}
	}
	if len(differ) > 0 {
		fmt.Fprintf(out, "Not reproducible: %d of %d differ:\n%s\n", len(differ), len(r.Artifacts), strings.Join(differ, "\n"))
		if r.Unreproduced != "" {
			fmt.Fprintf(out, "The first: %s.\n", r.Unreproduced)
		}
		fmt.Fprintf(out, "Both copies are kept, for diffoscope:\n")
		for _, k := range r.Kept {
			fmt.Fprintf(out, "  %s\n", k)
		}
		if r.FilesNote != "" {
			fmt.Fprintf(out, "%s\n", r.FilesNote)
			return
		}
		fmt.Fprintf(out, "%d files of the root filesystem differ (recorded → new):\n", len(r.Files))
		for _, f := range r.Files {
			switch {
			case f.A == "":
				fmt.Fprintf(out, "  + %s: %s\n", f.Path, f.B)
			case f.B == "":
				fmt.Fprintf(out, "  - %s: %s\n", f.Path, f.A)
			default:
				fmt.Fprintf(out, "  ~ %s: %s\n", f.Path, fileChange(f.A, f.B))
			}
		}
		return
	}
	if r.Verified {
		fmt.Fprintf(out, "Verified: every stage digest and %d artifact digests equal the recorded ones; status %q.\n", len(r.Artifacts), r.Status)
		if r.Out != "" {
			fmt.Fprintf(out, "Exported to %s\n", r.Out)
		}
	}
}

// fileChange says what differs between two descriptions of one file
// (layer.FileDiff's): "size 21 → 20, content sha256:7ac37cb44966 →
// sha256:0a9f3fa383b4", or both descriptions when they do not align.
func fileChange(a, b string) string {
	ta, tb := strings.Fields(a), strings.Fields(b)
	if len(ta) != len(tb) {
		return a + " → " + b
	}
	var parts []string
	for i := range ta {
		if ta[i] == tb[i] {
			continue
		}
		label, x, y := "", ta[i], tb[i]
		switch {
		case i > 0 && slices.Contains([]string{"type", "mode", "owner", "mtime", "device", "xattrs", "->"}, ta[i-1]):
			label = ta[i-1]
		case i+1 < len(ta) && ta[i+1] == "bytes":
			label = "size"
		case strings.HasPrefix(x, "sha256:") && strings.HasPrefix(y, "sha256:"):
			label, x, y = "content", "sha256:"+x[7:min(19, len(x))], "sha256:"+y[7:min(19, len(y))]
		}
		parts = append(parts, strings.TrimSpace(label+" "+x+" → "+y))
	}
	return strings.Join(parts, ", ")
}
