package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/internal/hosttool"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/ec2"
	"github.com/fgimg/fgimg/register/nimbus"
	"github.com/fgimg/fgimg/register/opennebula"
	"github.com/fgimg/fgimg/register/openstack"
	"github.com/fgimg/fgimg/register/warewulf"
	"github.com/fgimg/fgimg/register/xcat"
	"github.com/fgimg/fgimg/stages/sandbox"
)

// clouds maps a register.json's kind to the Cloud that performs it: the
// one place that knows every infrastructure register can talk to.
var clouds = map[string]register.Opener{
	"openstack": func(ctx context.Context, f *register.File) (register.Cloud, error) {
		return openstack.Open(ctx, f)
	},
	"opennebula": func(_ context.Context, f *register.File) (register.Cloud, error) {
		return opennebula.Open(f)
	},
	"xcat": func(_ context.Context, f *register.File) (register.Cloud, error) {
		return xcat.Open(f)
	},
	"warewulf": func(_ context.Context, f *register.File) (register.Cloud, error) {
		return warewulf.Open(f)
	},
	"ec2": func(ctx context.Context, f *register.File) (register.Cloud, error) {
		return ec2.Open(ctx, f)
	},
	"eucalyptus": func(ctx context.Context, f *register.File) (register.Cloud, error) {
		return ec2.Open(ctx, f)
	},
	"nimbus": func(ctx context.Context, f *register.File) (register.Cloud, error) {
		return nimbus.Open(ctx, f)
	},
}

func openCloud(ctx context.Context, f *register.File) (register.Cloud, error) {
	open, ok := clouds[f.Kind]
	if !ok {
		return nil, fmt.Errorf("target %q: fgimg cannot register %q targets", f.Target, f.Kind)
	}
	return open(ctx, f)
}

func cmdRegister(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg register", flag.ContinueOnError)
	var (
		cf      configFlags
		outDir  string
		jobs    int
		asJSON  bool
		dryRun  bool
		replace bool
		rf      remoteFlags
	)
	cf.register(fs, true)
	rf.register(fs)
	fs.StringVar(&outDir, "o", "out", "the targets' artifacts are in `DIR`/<target>/, as fgimg build wrote them")
	fs.IntVar(&jobs, "j", min(runtime.NumCPU(), 4), "vet and register at most `N` targets at once")
	fs.BoolVar(&asJSON, "json", false, "print the plans and registrations as one JSON document")
	fs.BoolVar(&dryRun, "dry-run", false, "print the plan and change nothing")
	fs.BoolVar(&replace, "replace", false, "retire the older images fgimg registered for each target once the new ones are ready (as the target's replace attribute)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: fgimg register [flags] [PATH]

Registers the built artifacts of the openstack, opennebula, ec2,
eucalyptus, nimbus, xcat and warewulf targets in PATH into their clouds
(xcat and warewulf: on the management node fgimg runs on, one bare-metal
registration at a time). For each target it checks the artifacts' digests
against the build, asks the cloud what it already has, prints a plan and
carries it out: an image with the same content is reused, never uploaded
twice. register does not build: build the targets first (fgimg build).

Credentials come from the environment, as the clouds' own tools take
them: OS_CLOUD and clouds.yaml (or OS_*) for OpenStack, ONE_XMLRPC and
ONE_AUTH for OpenNebula, the AWS SDK's chain (AWS_*, ~/.aws) for EC2,
the eucarc's EC2_URL, S3_URL and EC2_ACCESS_KEY/EC2_SECRET_KEY for
Eucalyptus, cloud-client's cloud.properties for Nimbus; xCAT's, Moab's
(MOABHOMEDIR) and Warewulf's commands are found on PATH or where they
install. Where the images went is written to
OUT/<target>/registrations.json and kept in the cache; with --remote it
is attached to the target in the shared repository too.

Flags:`)
		fs.PrintDefaults()
	}
	paths, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if jobs < 1 {
		return flagResult(usageError{"-j must be at least 1"}, errw)
	}
	// Vetting mounts the images, which needs a private mount namespace:
	// Isolate runs fgimg again inside one now, before anything is said
	// or done, and does not return in this process.
	if err := sandbox.Isolate(); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	store, plan, done := cf.planWithCache(paths, errw)
	if plan == nil {
		return exitFailed
	}
	defer done()
	memo := store.FileHashes()
	defer memo.Save()
	names, err := cloudTargets(plan, outDir)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	names, refused, err := vetBeforeRegister(ctx, store, plan, names, outDir, jobs, errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	if len(names) == 0 {
		return exitFailed
	}
	o := register.Options{
		Out: outDir, Targets: names, Open: openCloud, DryRun: dryRun, Jobs: jobs, Replace: replace,
		Store: store, Memo: memo, Extra: templateCommit(ctx, paths, errw),
	}
	if !asJSON {
		o.Log = out
	}
	results := register.Run(ctx, o)
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.Encode(struct {
			DryRun  bool              `json:"dry_run"`
			Targets []register.Result `json:"targets"`
		}{dryRun, results})
	}
	code := exitOK
	if refused > 0 {
		code = exitFailed
	}
	if !dryRun {
		if err := catalogRegister(store, outDir, results); err != nil {
			fmt.Fprintf(errw, "fgimg: recording the registrations in the catalog: %s\n", err)
			code = exitFailed
		}
	}
	if !dryRun && rf.ref != "" && !rf.readOnly {
		if err := shareRegistrations(ctx, rf, plan, outDir, results); err != nil {
			fmt.Fprintf(errw, "fgimg: the registrations were not shared: %s\n", err)
		}
	}
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(errw, "fgimg: %s\n", r.Err)
			code = exitFailed
		}
	}
	return code
}

// catalogRegister records a register run in the catalog: each target
// registered (or found registered) counts as a use of its entry, and the
// entry gets the target's OUT/<target>/registrations.json when that
// changed. A target whose register failed changes nothing, nor one the
// catalog lacks (built before it). One transaction for the uses.
func catalogRegister(store *cache.Store, out string, results []register.Result) error {
	var ok []register.Result
	for _, r := range results {
		if r.Err == nil && r.TargetDigest != "" && len(r.Registrations) > 0 {
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	cat, err := catalog.Open(store)
	if err != nil {
		return err
	}
	defer cat.Close()
	files := cat.Files()
	now := time.Now().UTC()
	var uses []catalog.Use
	for _, r := range ok {
		if !files.Exists(r.TargetDigest, r.Target) {
			continue
		}
		uses = append(uses, catalog.Use{ID: r.TargetDigest, Name: r.Target, Event: catalog.Event{Who: catalog.User(), When: now, What: catalog.UseRegister}})
		raw, err := os.ReadFile(filepath.Join(out, r.Target, register.RecordsName))
		if err != nil {
			return err
		}
		e, err := files.Get((&catalog.Entry{ID: r.TargetDigest, Name: r.Target}).Key())
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return fmt.Errorf("%s: %w", register.RecordsName, err)
		}
		if !bytes.Equal(buf.Bytes(), e.Registrations) {
			if err := cat.SetRegistrations(r.TargetDigest, r.Target, buf.Bytes()); err != nil {
				return err
			}
		}
	}
	return cat.Record(nil, uses)
}

// cloudTargets are the selected targets of a kind register performs. A
// target whose folder was built from another configuration than PATH
// now describes is refused: its artifacts are not what the templates
// say.
func cloudTargets(plan *planner.Plan, out string) ([]string, error) {
	var names []string
	for _, t := range plan.Targets {
		if _, ok := clouds[t.Target.Kind]; !ok {
			continue
		}
		name := t.Target.Name
		dir := filepath.Join(out, name)
		if m, err := readManifest(dir); err == nil && stale(plan, m) {
			return nil, fmt.Errorf("%s was built from another version of the configuration; build it again (fgimg build -only %s -o %s) before registering it", dir, name, out)
		}
		names = append(names, name)
	}
	if len(names) == 0 {
		var kinds []string
		for k := range clouds {
			kinds = append(kinds, k)
		}
		slices.Sort(kinds)
		list := strings.Join(kinds[:len(kinds)-1], ", ") + " or " + kinds[len(kinds)-1]
		return nil, fmt.Errorf("nothing to register: no %s target is selected", list)
	}
	return names, nil
}

// templateCommit is the fgimg_template_commit property: the git commit
// of the templates' work tree, with "-dirty" when they have changes
// that are not committed; none outside git.
func templateCommit(ctx context.Context, paths []string, errw io.Writer) map[string]string {
	dir := "."
	if len(paths) > 0 {
		dir = paths[0]
		if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
			dir = filepath.Dir(dir)
		}
	}
	git := func(args ...string) (string, error) {
		cmd, err := hosttool.Command(ctx, "git", append([]string{"-C", dir}, args...)...)
		if err != nil {
			return "", err
		}
		b, err := cmd.Output()
		return strings.TrimSpace(string(b)), err
	}
	head, err := git("rev-parse", "--verify", "-q", "HEAD")
	if err != nil || head == "" {
		return nil // not a git work tree, or no commit yet
	}
	if st, err := git("status", "--porcelain", "--untracked-files=no", "--", "."); err == nil && st != "" {
		head += "-dirty"
		fmt.Fprintf(errw, "fgimg: the templates in %s have changes that are not committed: images are registered with %s=%s\n", dir, register.PropTemplateCommit, head)
	}
	return map[string]string{register.PropTemplateCommit: head}
}
