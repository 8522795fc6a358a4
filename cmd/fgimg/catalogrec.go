package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/register"
	"github.com/opencontainers/go-digest"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// catalogBuild records in the catalog every image and target of a
// successful build, and each target's export as a use. Only entries new
// to the catalog cost more than a stat: their software stack is read
// (once per image digest) and their templates hashed.
type catalogBuild struct {
	store *cache.Store
	eng   *engine.Engine
	cfg   *lang.Config
	plan  *planner.Plan
	out   string // OUT; "" when nothing was exported
	// fetched are the target writes pulled from the shared repository:
	// each is a use of its entries.
	fetched map[digest.Digest]bool
	epoch   *time.Time
	vars    []lang.VarArg // -var and -var-file, in order

	cat   *catalog.Catalog
	now   time.Time
	prov  sync.Once // templates and git, read once for all new entries
	tmpls []catalog.Template
	git   *catalog.Git
}

func (b *catalogBuild) record(ctx context.Context) error {
	cat, err := catalog.Open(b.store)
	if err != nil {
		return err
	}
	defer cat.Close()
	b.cat, b.now = cat, time.Now().UTC()
	files := cat.Files()
	var entries []*catalog.Entry
	var uses []catalog.Use
	images := map[digest.Digest]*catalog.Entry{}
	for _, im := range b.plan.Images {
		e := &catalog.Entry{ID: im.ID(), Name: im.Image.Name}
		if !files.Exists(e.ID, e.Name) {
			if err := b.imageEntry(ctx, e, im); err != nil {
				return err
			}
		}
		images[e.ID] = e
		entries = append(entries, e)
	}
	for _, t := range b.plan.Targets {
		e := &catalog.Entry{ID: t.Write.Digest, Name: t.Target.Name}
		if !files.Exists(e.ID, e.Name) {
			if err := b.targetEntry(ctx, e, t, images[t.Image.ID()]); err != nil {
				return err
			}
		} else if err := b.indexRegistrations(e, t); err != nil {
			return err
		}
		entries = append(entries, e)
		if b.out != "" {
			uses = append(uses, catalog.Use{ID: e.ID, Name: e.Name, Event: catalog.Event{Who: catalog.User(), When: b.now, What: catalog.UseExport}})
		}
		if b.fetched[e.ID] {
			uses = append(uses, catalog.Use{ID: e.ID, Name: e.Name, Event: catalog.Event{Who: catalog.User(), When: b.now, What: catalog.UseFetch}})
		}
	}
	return cat.Record(entries, uses)
}

// common fills what images and targets share.
func (b *catalogBuild) common(e *catalog.Entry, im *planner.Image, chain []*planner.Stage) error {
	m := im.Image.Meta
	e.Owner, e.OS, e.Arch, e.Description, e.Permission = m.Owner, m.OS, m.Arch, m.Description, m.Permission
	e.Tags = slices.Clone(m.Tags)
	e.Status, e.Created, e.Version = catalog.StatusBuilt, b.now, versionString()
	if b.epoch != nil {
		sde := b.epoch.Unix()
		e.SourceDateEpoch = &sde
	}
	for _, a := range im.Image.Pedigree() {
		e.Pedigree = append(e.Pedigree, a.Name)
	}
	for _, s := range chain {
		rec, err := b.store.Record(s.Digest)
		if err != nil {
			return err
		}
		st := catalog.Stage{Digest: s.Digest, Kind: s.Kind(), Inputs: rec.Inputs, Spec: planner.SpecJSON(s)}
		for _, o := range rec.Outputs {
			st.Size += o.Size
			st.Outputs = append(st.Outputs, o.Digest)
		}
		e.Stages = append(e.Stages, st)
	}
	b.prov.Do(b.provenance)
	e.Templates, e.Git = b.tmpls, b.git
	e.Vars, e.Variables = recordVars(b.vars), variableValues(b.cfg)
	return nil
}

// recordVars is the -var and -var-file arguments as a record keeps
// them: a file by its absolute path.
func recordVars(args []lang.VarArg) []catalog.Var {
	var out []catalog.Var
	for _, a := range args {
		v := catalog.Var{Name: a.Name, Value: a.Value, File: a.File}
		if v.File != "" {
			if abs, err := filepath.Abs(v.File); err == nil {
				v.File = abs
			}
		}
		out = append(out, v)
	}
	return out
}

// varArgs turns recorded arguments back into -var and -var-file ones.
func varArgs(vars []catalog.Var) []lang.VarArg {
	var out []lang.VarArg
	for _, v := range vars {
		out = append(out, lang.VarArg{Name: v.Name, Value: v.Value, File: v.File})
	}
	return out
}

// variableValues is the value each declared variable of cfg ended with,
// as JSON.
func variableValues(cfg *lang.Config) map[string]json.RawMessage {
	if len(cfg.Variables) == 0 {
		return nil
	}
	m := map[string]json.RawMessage{}
	for _, v := range cfg.Variables {
		if !v.Value.IsWhollyKnown() {
			continue
		}
		if b, err := ctyjson.Marshal(v.Value, v.Value.Type()); err == nil {
			m[v.Name] = b
		}
	}
	return m
}

func (b *catalogBuild) imageEntry(ctx context.Context, e *catalog.Entry, im *planner.Image) error {
	e.Type, e.Kind = catalog.TypeImage, "image"
	if err := b.common(e, im, im.Stages); err != nil {
		return err
	}
	for _, s := range e.Stages {
		e.Size += s.Size
	}
	// The stack is read once per image, recorded by the engine (the
	// SBOM of every target comes from the same record); an image whose
	// stack cannot be read is catalogued with the reason.
	st, err := b.eng.Stack(ctx, im.Stages[len(im.Stages)-1])
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.StackError = err.Error()
		return nil
	}
	e.Stack = st
	return nil
}

func (b *catalogBuild) targetEntry(ctx context.Context, e *catalog.Entry, t *planner.Target, img *catalog.Entry) error {
	e.Type, e.Kind, e.Aim = catalog.TypeTarget, t.Target.Kind, catalog.Aim(t.Target.Kind)
	e.Image, e.ImageID = t.Image.Image.Name, t.Image.ID()
	if err := b.common(e, t.Image, append(t.Chain(), t.Write)); err != nil {
		return err
	}
	rec, err := b.store.Record(t.Write.Digest)
	if err != nil {
		return err
	}
	for _, o := range rec.Outputs {
		e.Artifacts = append(e.Artifacts, catalog.Artifact{Path: o.Name, Digest: o.Digest, Size: o.Size, MediaType: o.MediaType})
		e.Size += o.Size
	}
	if img != nil && img.Stages != nil {
		e.Stack, e.StackError = img.Stack, img.StackError
	} else if prev, err := b.cat.Files().Get((&catalog.Entry{ID: t.Image.ID(), Name: t.Image.Image.Name}).Key()); err == nil {
		e.Stack, e.StackError = prev.Stack, prev.StackError
	}
	if b.out != "" {
		if dir, err := filepath.Abs(filepath.Join(b.out, t.Target.Name)); err == nil {
			e.Locations = append(e.Locations, dir)
		}
	}
	b.readRegistrations(e, t)
	return nil
}

// readRegistrations puts OUT/<target>/registrations.json into e; it
// reports whether that changed e.
func (b *catalogBuild) readRegistrations(e *catalog.Entry, t *planner.Target) bool {
	if b.out == "" {
		return false
	}
	raw, err := os.ReadFile(filepath.Join(b.out, t.Target.Name, register.RecordsName))
	if err != nil || !json.Valid(raw) {
		return false
	}
	var buf bytes.Buffer
	json.Compact(&buf, raw)
	if bytes.Equal(buf.Bytes(), e.Registrations) {
		return false
	}
	e.Registrations = buf.Bytes()
	return true
}

// indexRegistrations updates a known target's entry when its
// registrations.json is new or changed.
func (b *catalogBuild) indexRegistrations(e *catalog.Entry, t *planner.Target) error {
	if b.out == "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(b.out, t.Target.Name, register.RecordsName)); err != nil {
		return nil
	}
	prev, err := b.cat.Files().Get(e.Key())
	if err != nil {
		return err
	}
	if b.readRegistrations(prev, t) {
		return b.cat.Update(prev)
	}
	return nil
}

// templateDigests is every file of cfg (templates and variable files)
// by absolute path, in path order, with its content's digest.
func templateDigests(cfg *lang.Config) []catalog.Template {
	var out []catalog.Template
	for name, f := range cfg.Files {
		if abs, err := filepath.Abs(name); err == nil {
			name = abs
		}
		out = append(out, catalog.Template{Path: name, Digest: digest.FromBytes(f.Bytes)})
	}
	slices.SortFunc(out, func(x, y catalog.Template) int { return strings.Compare(x.Path, y.Path) })
	return out
}

// provenance reads the templates' digests and the git commit holding them.
func (b *catalogBuild) provenance() {
	b.tmpls = templateDigests(b.cfg)
	if len(b.tmpls) == 0 {
		return
	}
	// One git call: the work tree's root, then HEAD; it fails outside git.
	head, err := exec.Command("git", "-C", filepath.Dir(b.tmpls[0].Path), "rev-parse", "--show-toplevel", "HEAD").Output()
	lines := strings.Fields(string(head))
	if err != nil || len(lines) != 2 {
		return
	}
	root := lines[0]
	g := &catalog.Git{Root: root, Commit: lines[1]}
	args := []string{"-C", root, "status", "--porcelain", "--"}
	for _, t := range b.tmpls {
		args = append(args, t.Path)
	}
	st, err := exec.Command("git", args...).Output()
	g.Dirty = err != nil || len(bytes.TrimSpace(st)) > 0
	b.git = g
}
