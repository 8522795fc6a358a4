package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/internal/bytesize"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/register"
	"github.com/opencontainers/go-digest"
)

// openCatalog opens the cache and its catalog for a command; a missing
// cache gives (nil, nil, nil) and the command says the catalog is empty.
func openCatalog(dirFlag string, errw io.Writer) (*cache.Store, *catalog.Catalog, error) {
	store, err := openCache(dirFlag, false, errw)
	if err != nil || store == nil {
		return nil, nil, err
	}
	cat, err := catalog.Open(store)
	if err != nil {
		store.Close()
		return nil, nil, err
	}
	return store, cat, nil
}

// openEntry opens the catalog and finds the entry ref names (see
// catalog.Find); on an error nothing is left open.
func openEntry(dirFlag, ref string, errw io.Writer) (*cache.Store, *catalog.Catalog, *catalog.Entry, error) {
	store, cat, err := openCatalog(dirFlag, errw)
	if err != nil {
		return nil, nil, nil, err
	}
	if cat == nil {
		return nil, nil, nil, fmt.Errorf("no image or target %q in the catalog (the cache is empty)", ref)
	}
	e, err := cat.Find(ref)
	if err != nil {
		cat.Close()
		store.Close()
		return nil, nil, nil, err
	}
	return store, cat, e, nil
}

// recordUse counts one use of a catalog entry; failing to is told, not
// fatal: the use itself (a boot) matters more than its accounting.
func recordUse(dirFlag string, id digest.Digest, name, what string, errw io.Writer) {
	store, cat, err := openCatalog(dirFlag, errw)
	if err == nil && cat != nil {
		defer store.Close()
		defer cat.Close()
		err = cat.UseEntry(id, name, what)
	}
	if err != nil {
		fmt.Fprintf(errw, "fgimg: note: recording the %s in the catalog: %s\n", what, err)
	}
}

func cmdImages(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg images", flag.ContinueOnError)
	dirFlag := fs.String("cache-dir", "", "the cache `directory`")
	asJSON := fs.Bool("json", false, "print the entries as a JSON array")
	var rf remoteFlags
	rf.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: fgimg images [flags] [QUERY]

Lists the catalog's images and targets; with --remote, the shared
repository's targets instead, from its listing and annotations, with
every runner's usage. QUERY is
  [FIELDS] [where FIELD OP VALUE, ...] [order by FIELD [desc]] [limit N]
for example
  * where os=debian-12, tag=hpc
  name,size,last_access where owner=alice, last_access>90d
  where package=openmpi-bin@4.1*, size>1GiB order by access_count desc
OP is = != ~ (regular expression) !~ < <= > >=. An age (30d, 12h, 2w)
compares how long ago: last_access<30d is "used within the last 30 days".
See README.md, "The image catalog".

Flags:
`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	q, err := catalog.ParseQuery(strings.Join(pos, " "), time.Now())
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitUsage
	}
	var rows []catalog.Row
	if rf.ref != "" {
		if rows, err = remoteImages(ctx, rf, q); err != nil {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
			return exitFailed
		}
	} else if store, cat, err := openCatalog(*dirFlag, errw); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	} else if cat != nil {
		defer store.Close()
		defer cat.Close()
		if rows, err = cat.Run(ctx, q); err != nil {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
			return exitFailed
		}
	}
	if *asJSON {
		list := make([]map[string]any, 0, len(rows))
		for _, r := range rows {
			list = append(list, r.Values)
		}
		b, _ := json.MarshalIndent(list, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
		return exitOK
	}
	// tabwriter writes cell by cell: one write(2) each, unbuffered.
	bw := bufio.NewWriter(out)
	defer bw.Flush()
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(q.Fields, "\t")))
	for _, r := range rows {
		cells := make([]string, len(q.Fields))
		for i, f := range q.Fields {
			cells[i] = cell(f, r.Values[f])
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	return exitOK
}

// cell formats one value for the table.
func cell(field string, v any) string {
	switch x := v.(type) {
	case nil:
		return "-"
	case time.Time:
		return x.Local().Format("2006-01-02 15:04")
	case []string:
		return strings.Join(x, ",")
	case int64:
		if field == "size" {
			return bytesize.Format(x)
		}
		return fmt.Sprint(x)
	case string:
		if field == "id" {
			return planner.Short(digest.Digest(x))
		}
		if x == "" {
			return "-"
		}
		return x
	}
	return fmt.Sprint(v)
}

func cmdShow(_ context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg show", flag.ContinueOnError)
	dirFlag := fs.String("cache-dir", "", "the cache `directory`")
	asJSON := fs.Bool("json", false, "print the entry as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: fgimg show [flags] ID|NAME\n\nShows one catalog entry in full: metadata, pedigree, stages, software\nstack, artifacts, registrations, usage and approval. NAME is an image's or target's\nname (its newest build), ID a digest or a unique prefix of one.\n\nFlags:")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if len(pos) != 1 {
		return flagResult(usageError{"fgimg show takes one ID or NAME"}, errw)
	}
	store, cat, e, err := openEntry(*dirFlag, pos[0], errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	defer store.Close()
	defer cat.Close()
	usage, err := cat.Usage(e)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	files, err := catalog.NewFiles(store)
	var approval *catalog.Approval
	if err == nil {
		approval, err = files.Approval(e.Vetted())
	}
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	if *asJSON {
		b, _ := json.MarshalIndent(struct {
			*catalog.Entry
			Usage []catalog.Event `json:"usage"`
			// Approval is nil (null) when the image was never vetted.
			Approval *catalog.Approval `json:"approval"`
		}{e, usage, approval}, "", "  ")
		fmt.Fprintf(out, "%s\n", b)
		return exitOK
	}
	printEntry(out, e, usage)
	printApproval(out, e, approval)
	return exitOK
}

// printApproval prints the catalog's approval of e's image: whether
// fgimg register may take it, who or what said so, and what blocks.
func printApproval(out io.Writer, e *catalog.Entry, a *catalog.Approval) {
	if a == nil {
		fmt.Fprintf(out, "\nApproval: none (not vetted; fgimg vet %s vets it)\n", e.Name)
		return
	}
	fmt.Fprintf(out, "\nApproval: %s\n", a.Status)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(out, "  %-8s  %s\n", k, v)
		}
	}
	by := a.By
	if a.Who != "" {
		by += " (" + a.Who + ")"
	}
	row("by", by)
	row("when", a.When.Local().Format(time.RFC3339))
	row("note", a.Note)
	row("blocking", strings.Join(a.Blocking, ", "))
	row("image", fmt.Sprintf("%s, vetted as %s", a.Image, a.Name))
	row("report", a.Report)
}

func printEntry(out io.Writer, e *catalog.Entry, usage []catalog.Event) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row(e.Type, e.Name)
	row("id", string(e.ID))
	row("status", e.Status)
	if e.Purged != nil {
		row("purged", e.Purged.Local().Format(time.RFC3339))
	}
	row("kind", e.Kind)
	row("aim", e.Aim)
	row("owner", e.Owner)
	row("os", e.OS)
	row("arch", e.Arch)
	row("description", e.Description)
	row("tags", strings.Join(e.Tags, ", "))
	row("permission", e.Permission)
	row("created", e.Created.Local().Format(time.RFC3339))
	row("size", bytesize.Format(e.Size))
	if e.Image != "" {
		row("image", e.Image+" "+planner.Short(e.ImageID))
	}
	row("pedigree", strings.Join(e.Pedigree, " > "))
	row("locations", strings.Join(e.Locations, ", "))
	row("fgimg", e.Version)
	if e.SourceDateEpoch != nil {
		row("SOURCE_DATE_EPOCH", fmt.Sprint(*e.SourceDateEpoch))
	}
	if e.Git != nil {
		dirty := ""
		if e.Git.Dirty {
			dirty = " (dirty)"
		}
		row("git", e.Git.Root+" @ "+e.Git.Commit+dirty)
	}
	tw.Flush()
	fmt.Fprintln(out, "\nStages:")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, s := range e.Stages {
		var in []string
		for _, d := range s.Inputs {
			in = append(in, planner.Short(d))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", planner.Short(s.Digest), s.Kind, bytesize.Format(s.Size), strings.Join(in, " "))
	}
	tw.Flush()
	if len(e.Artifacts) > 0 {
		fmt.Fprintln(out, "\nArtifacts:")
		for _, a := range e.Artifacts {
			fmt.Fprintf(out, "  %s  %s  %s\n", a.Path, bytesize.Format(a.Size), a.Digest)
		}
	}
	if len(e.Templates) > 0 {
		fmt.Fprintln(out, "\nTemplates:")
		for _, t := range e.Templates {
			fmt.Fprintf(out, "  %s  %s\n", t.Path, planner.Short(t.Digest))
		}
	}
	fmt.Fprintln(out, "\nSoftware stack:")
	switch s := e.Stack; {
	case s == nil:
		fmt.Fprintf(out, "  unknown: %s\n", e.StackError)
	default:
		if s.OSID != "" {
			fmt.Fprintf(out, "  os %s %s\n", s.OSID, s.OSVersionID)
		}
		if len(s.Kernels) > 0 {
			fmt.Fprintf(out, "  kernels %s\n", strings.Join(s.Kernels, ", "))
		}
		if len(s.Services) > 0 {
			fmt.Fprintf(out, "  services %s\n", strings.Join(s.Services, ", "))
		}
		fmt.Fprintf(out, "  %d packages (%s)\n", len(s.Packages), s.Manager)
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, p := range s.Packages {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", p.Name, p.Version, p.Arch)
		}
		tw.Flush()
	}
	if len(e.Registrations) > 0 {
		printRegistrations(out, e.Registrations)
	}
	fmt.Fprintf(out, "\nUsage: %d\n", len(usage))
	for _, u := range usage {
		fmt.Fprintf(out, "  %s  %s  %s\n", u.When.Local().Format("2006-01-02 15:04:05"), u.What, u.Who)
	}
}

// printRegistrations prints a target's registrations.json one image a
// line: its step, ID, name, cloud and when register made or last found it.
func printRegistrations(out io.Writer, raw json.RawMessage) {
	var recs register.Records
	if err := json.Unmarshal(raw, &recs); err != nil || len(recs.Images) == 0 {
		fmt.Fprintf(out, "\nRegistrations:\n  %s\n", raw)
		return
	}
	fmt.Fprintf(out, "\nRegistrations: %d\n", len(recs.Images))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, r := range recs.Images {
		fmt.Fprintf(tw, "  %s\timage %s\t%q\t%s\t%s\t%s\n", r.Step, r.ImageID, r.Name, r.Cloud, r.Digest, r.Time.Local().Format("2006-01-02 15:04:05"))
	}
	tw.Flush()
}

func cmdKeep(_ context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg keep", flag.ContinueOnError)
	dirFlag := fs.String("cache-dir", "", "the cache `directory`")
	undo := fs.Bool("undo", false, "let purge remove the entry again")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: fgimg keep [flags] ID|NAME...\n\nMarks catalog entries as roots that purge never removes.\n\nFlags:")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if len(pos) == 0 {
		return flagResult(usageError{"fgimg keep takes one or more IDs or NAMEs"}, errw)
	}
	store, cat, err := openCatalog(*dirFlag, errw)
	if err == nil && cat == nil {
		err = errors.New("the catalog is empty")
	}
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	defer store.Close()
	defer cat.Close()
	for _, ref := range pos {
		e, err := cat.Find(ref)
		if err == nil {
			err = cat.SetKeep(e, !*undo)
		}
		if err != nil {
			fmt.Fprintf(errw, "fgimg: %s\n", err)
			return exitFailed
		}
		verb := "kept: purge never removes it"
		if *undo {
			verb = "no longer kept"
		}
		fmt.Fprintf(out, "%s %s %s\n", e.Name, planner.Short(e.ID), verb)
	}
	return exitOK
}

func cmdCatalog(_ context.Context, args []string, out, errw io.Writer) int {
	const use = "Usage: fgimg catalog rebuild [--cache-dir DIR]\n\n  rebuild   rebuild the catalog's index from the records in the cache\n"
	if len(args) == 0 || args[0] != "rebuild" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(out, use)
			return exitOK
		}
		fmt.Fprint(errw, use)
		return exitUsage
	}
	fs := flag.NewFlagSet("fgimg catalog rebuild", flag.ContinueOnError)
	dirFlag := fs.String("cache-dir", "", "the cache `directory`")
	if pos, err := parseFlags(fs, args[1:], out, errw); err != nil {
		return flagResult(err, errw)
	} else if len(pos) > 0 {
		return flagResult(usageError{"fgimg catalog rebuild takes no arguments"}, errw)
	}
	store, cat, err := openCatalog(*dirFlag, errw)
	if err == nil && cat == nil {
		fmt.Fprintln(out, "The cache is empty: no catalog to rebuild.")
		return exitOK
	}
	if err == nil {
		err = cat.Rebuild()
	}
	if cat != nil {
		defer store.Close()
		defer cat.Close()
	}
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	keys, _ := cat.Files().Keys()
	fmt.Fprintf(out, "Rebuilt the catalog's index: %d entries.\n", len(keys))
	return exitOK
}
