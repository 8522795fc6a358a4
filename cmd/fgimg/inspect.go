package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/planner"
	"github.com/opencontainers/go-digest"
)

func cmdInspect(_ context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg inspect", flag.ContinueOnError)
	var cf configFlags
	cf.register(fs, false)
	asJSON := fs.Bool("json", false, "print the image as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: fgimg inspect [flags] IMAGE [PATH]\n\nShows an image as resolved: pedigree, metadata after inheritance, stages.\n\nFlags:")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if len(pos) == 0 || (len(pos) == 1 && strings.ContainsRune(pos[0], '/')) {
		return flagResult(usageError{"inspect needs an image name: fgimg inspect IMAGE [PATH]"}, errw)
	}
	name := pos[0]
	cfg, plan := cf.load(pos[1:], errw)
	if plan == nil {
		return exitFailed
	}
	im := findImage(cfg, plan, name, errw)
	if im == nil {
		return exitFailed
	}
	var tgs []*planner.Target
	for _, t := range plan.Targets {
		if t.Image == im {
			tgs = append(tgs, t)
		}
	}
	if *asJSON {
		b, _ := json.MarshalIndent(inspectJSON(im, tgs), "", "  ")
		fmt.Fprintf(out, "%s\n", b)
		return exitOK
	}
	writeInspect(out, im, tgs)
	return exitOK
}

// findImage returns the planned image name, or says on errw that there
// is none and which there are.
func findImage(cfg *lang.Config, plan *planner.Plan, name string, errw io.Writer) *planner.Image {
	im := plan.Image(name)
	if im == nil {
		var names []string
		for _, i := range cfg.Images {
			names = append(names, i.Name)
		}
		fmt.Fprintf(errw, "fgimg: there is no image %q in %s; the images are %s.\n", name, cfg.Dir, strings.Join(names, ", "))
	}
	return im
}

type inspected struct {
	Name     string            `json:"name"`
	Parent   *string           `json:"parent"`
	Pedigree []string          `json:"pedigree"`
	ID       digest.Digest     `json:"id"`
	Stages   []digest.Digest   `json:"stages"`
	Targets  []inspectedTarget `json:"targets"`
	lang.Metadata
}

// inspectedTarget is a target made from the image, as its kind describes it.
type inspectedTarget struct {
	Name    string        `json:"name"`
	Kind    string        `json:"kind"`
	Summary string        `json:"summary"`
	Digest  digest.Digest `json:"digest"`
}

func inspectJSON(im *planner.Image, tgs []*planner.Target) inspected {
	r := inspected{Name: im.Image.Name, ID: im.ID(), Metadata: im.Image.Meta}
	if p := im.Image.Parent; p != nil {
		r.Parent = &p.Name
	}
	for _, a := range im.Image.Pedigree() {
		r.Pedigree = append(r.Pedigree, a.Name)
	}
	for _, s := range im.Stages {
		r.Stages = append(r.Stages, s.Digest)
	}
	r.Targets = []inspectedTarget{}
	for _, t := range tgs {
		r.Targets = append(r.Targets, inspectedTarget{Name: t.Target.Name, Kind: t.Kind.Name(), Summary: planner.Describe(t.Write.Spec), Digest: t.Write.Digest})
	}
	return r
}

func writeInspect(w io.Writer, im *planner.Image, tgs []*planner.Target) {
	m := im.Image.Meta
	var ped []string
	for _, a := range im.Image.Pedigree() {
		ped = append(ped, a.Name)
	}
	var labels []string
	for k, v := range m.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	fmt.Fprintf(w, "image %s\n", im.Image.Name)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "  %-12s %s\n", k, v)
		}
	}
	row("id", im.ID().String())
	row("pedigree", strings.Join(ped, " → "))
	row("description", m.Description)
	row("os", m.OS)
	row("arch", m.Arch)
	row("owner", m.Owner)
	row("permission", m.Permission)
	row("tags", strings.Join(m.Tags, ", "))
	row("labels", strings.Join(labels, ", "))
	fmt.Fprintf(w, "  stages\n")
	for _, s := range im.Stages {
		from := ""
		if s.Image != nil && s.Image != im.Image {
			from = "  (" + s.Image.Name + ")"
		}
		fmt.Fprintf(w, "    %-6s  %s  %-9s  %s%s\n", s.Status, planner.Short(s.Digest), s.Kind(), planner.Describe(s.Spec), from)
	}
	if len(tgs) > 0 {
		fmt.Fprintf(w, "  targets\n")
	}
	for _, t := range tgs {
		fmt.Fprintf(w, "    %-6s  %s  %-9s  %s  %s\n", t.Write.Status, planner.Short(t.Write.Digest), t.Kind.Name(), t.Target.Name, planner.Describe(t.Write.Spec))
	}
}
