package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/fgimg/fgimg/planner"
)

func cmdValidate(_ context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg validate", flag.ContinueOnError)
	var cf configFlags
	cf.register(fs, false)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: fgimg validate [flags] [PATH]\n\nChecks templates, variables and file sources; reports every problem.\n\nFlags:")
		fs.PrintDefaults()
	}
	paths, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	cfg, plan := cf.load(paths, errw)
	if plan == nil {
		return exitFailed
	}
	fmt.Fprintf(out, "The configuration in %s is valid: %d images, %d targets.\n", cfg.Dir, len(cfg.Images), len(cfg.Targets))
	return exitOK
}

func cmdPlan(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg plan", flag.ContinueOnError)
	var cf configFlags
	var rf remoteFlags
	cf.register(fs, true)
	rf.register(fs)
	asJSON := fs.Bool("json", false, "print the plan as JSON (a stable interface)")
	asDot := fs.Bool("dot", false, "print the stage graph in Graphviz dot format")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: fgimg plan [flags] [PATH]\n\nShows the stage graph: what would be built and what is cached (with\n--remote, what would be pulled from the shared repository).\n\nFlags:")
		fs.PrintDefaults()
	}
	paths, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if *asJSON && *asDot {
		return flagResult(usageError{"-json and -dot exclude each other"}, errw)
	}
	_, done, err := cf.readCache(errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	defer done()
	_, plan := cf.load(paths, errw)
	if plan == nil {
		return exitFailed
	}
	if repo, err := rf.shared(nil); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	} else if repo != nil {
		if err := markPulls(ctx, repo, plan); err != nil {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
			return exitFailed
		}
	}
	switch {
	case *asJSON:
		b, _ := json.MarshalIndent(plan, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
	case *asDot:
		fmt.Fprint(out, dot(plan))
	default:
		fmt.Fprint(out, plan.String())
	}
	return exitOK
}

// dot renders the stage graph for Graphviz: stages as boxes, targets as
// diamonds, each image's last stage labelled with its name.
func dot(p *planner.Plan) string {
	var b strings.Builder
	b.WriteString("digraph fgimg {\n  rankdir=BT;\n  node [shape=box, fontname=monospace];\n")
	names := map[string][]string{}
	for _, im := range p.Images {
		id := im.ID().String()
		names[id] = append(names[id], im.Image.Name)
	}
	for _, s := range p.Stages {
		label := fmt.Sprintf("%s\\n%s", s.Kind(), planner.Short(s.Digest))
		attrs := ""
		if s.Node == planner.TargetWrite {
			var names []string
			for _, t := range s.Targets {
				names = append(names, t.Target.Name)
			}
			label = fmt.Sprintf("%s %s\\n%s", s.Kind(), strings.Join(names, ", "), planner.Short(s.Digest))
			attrs = ", shape=diamond"
		}
		if n := names[s.Digest.String()]; len(n) > 0 {
			sort.Strings(n)
			label += "\\nimage " + strings.Join(n, ", ")
			attrs += ", style=bold"
		}
		if s.Status == planner.StatusCached {
			attrs += ", color=gray"
		}
		fmt.Fprintf(&b, "  %q [label=%q%s];\n", planner.Short(s.Digest), label, attrs)
		if s.Input != nil {
			fmt.Fprintf(&b, "  %q -> %q;\n", planner.Short(s.Digest), planner.Short(s.Input.Digest))
		}
	}
	b.WriteString("}\n")
	return strings.ReplaceAll(b.String(), `\\n`, `\n`)
}
