package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/cache/remote"
	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/engine/shared"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/register"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sync/errgroup"
)

// remoteFlags are the shared repository's flags: build, plan,
// regenerate, register, push, pull and images take them.
type remoteFlags struct {
	ref       string
	readOnly  bool
	plainHTTP bool
	public    string
}

func (r *remoteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.ref, "remote", os.Getenv("FGIMG_REMOTE"), "the shared repository `REF`: HOST[:PORT]/PATH of an OCI registry (default $FGIMG_REMOTE)")
	fs.BoolVar(&r.readOnly, "remote-read-only", envBool("FGIMG_REMOTE_READ_ONLY"), "pull from the shared repository, never push to it (default $FGIMG_REMOTE_READ_ONLY)")
	fs.BoolVar(&r.plainHTTP, "remote-plain-http", envBool("FGIMG_REMOTE_PLAIN_HTTP"), "reach a registry that is not on a loopback address over plain HTTP (loopback always is)")
	fs.StringVar(&r.public, "remote-public", envOr("FGIMG_REMOTE_PUBLIC", "public"), "the `PATH` below REF of public images (private ones go under users/OWNER, group:NAME under groups/NAME)")
}

func envBool(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// open opens the shared repository, or returns nil without --remote.
func (r *remoteFlags) open() (*remote.Remote, error) {
	if r.ref == "" {
		return nil, nil
	}
	rem, err := remote.Open(r.ref, remote.Options{PlainHTTP: r.plainHTTP, UserAgent: "fgimg/" + versionString()})
	if err != nil {
		return nil, err
	}
	rem.ReadOnly = r.readOnly
	return rem, nil
}

// shared returns the engine's view of the shared repository for store,
// or nil without --remote.
func (r *remoteFlags) shared(store *cache.Store) (*shared.Repo, error) {
	rem, err := r.open()
	if rem == nil || err != nil {
		return nil, err
	}
	return &shared.Repo{Remote: rem, Store: store, Public: r.public, Runner: os.Getenv("FGIMG_RUNNER")}, nil
}

// markPulls asks the shared repository, in one batch, about every stage
// of plan to build, and marks those it has as to pull.
func markPulls(ctx context.Context, repo *shared.Repo, plan *planner.Plan) error {
	var ask []*planner.Stage
	for _, s := range plan.Stages {
		if s.Status == planner.StatusBuild {
			ask = append(ask, s)
		}
	}
	if err := repo.Find(ctx, ask); err != nil {
		return err
	}
	for _, s := range ask {
		if repo.Known(s) {
			s.Status = planner.StatusPull
		}
	}
	return nil
}

func cmdPush(ctx context.Context, args []string, out, errw io.Writer) int {
	return transfer(ctx, "push", args, out, errw)
}

func cmdPull(ctx context.Context, args []string, out, errw io.Writer) int {
	return transfer(ctx, "pull", args, out, errw)
}

// transfer is push and pull: every stage and target write of the plan
// that one side has and the other lacks is copied, concurrently.
func transfer(ctx context.Context, verb string, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg "+verb, flag.ContinueOnError)
	var cf configFlags
	var rf remoteFlags
	cf.register(fs, true)
	rf.register(fs)
	jobs := fs.Int("j", runtime.NumCPU(), "transfer at most `N` stages at once")
	fs.Usage = func() {
		if verb == "push" {
			fmt.Fprintln(fs.Output(), "Usage: fgimg push --remote REF [flags] [PATH]\n\nStores in the shared repository every stage and target of PATH that the\nlocal cache holds and the shared repository lacks. fgimg build --remote\ndoes this after building; push shares what was built without it.\n\nFlags:")
		} else {
			fmt.Fprintln(fs.Output(), "Usage: fgimg pull --remote REF [flags] [PATH]\n\nCopies into the local cache every stage and target of PATH that the\nshared repository holds and the local cache lacks, verifying each blob.\nNothing is built.\n\nFlags:")
		}
		fs.PrintDefaults()
	}
	paths, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if rf.ref == "" {
		return flagResult(usageError{"fgimg " + verb + " needs --remote REF (or FGIMG_REMOTE)"}, errw)
	}
	if verb == "push" && rf.readOnly {
		return flagResult(usageError{"fgimg push cannot be --remote-read-only"}, errw)
	}
	store, plan, done := cf.planWithCache(paths, errw)
	if plan == nil {
		return exitFailed
	}
	defer done()
	repo, err := rf.shared(store)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	var todo []*planner.Stage
	for _, s := range plan.Stages {
		if (s.Status == planner.StatusCached) == (verb == "push") {
			todo = append(todo, s)
		}
	}
	if err := repo.Find(ctx, todo); err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	start := time.Now()
	var mu sync.Mutex
	var n, failed int
	var bytes int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(*jobs, 1))
	for _, s := range todo {
		g.Go(func() error {
			var did bool
			var size int64
			var err error
			if verb == "push" {
				did, err = repo.Push(gctx, s)
			} else {
				did, size, err = repo.Pull(gctx, s)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				failed++
				fmt.Fprintf(errw, "fgimg: %s %s: %s\n", verb, stageLabel(s), err)
			case did:
				n++
				bytes += size
				fmt.Fprintf(out, "%sed %s\n", strings.TrimSuffix(verb, "e"), stageLabel(s))
			}
			return nil
		})
	}
	g.Wait()
	fmt.Fprintf(out, "%d of %d stages %sed%s in %s; %d failed.\n", n, len(plan.Stages), strings.TrimSuffix(verb, "e"), sizeNote(bytes), time.Since(start).Round(100*time.Millisecond), failed)
	if failed > 0 {
		return exitFailed
	}
	return exitOK
}

func stageLabel(s *planner.Stage) string {
	return fmt.Sprintf("%s (%s)", engine.StageName(s), planner.Short(s.Digest))
}

// remoteImages is `fgimg images --remote`: the shared repository's
// targets, listed from its tags and annotations, indexed in a scratch
// catalog (nothing is shared as a database file) and queried as the
// local one is.
func remoteImages(ctx context.Context, rf remoteFlags, q *catalog.Query) ([]catalog.Row, error) {
	rem, err := rf.open()
	if err != nil {
		return nil, err
	}
	listed, err := rem.ListTargets(ctx, nil)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "fgimg-remote-catalog-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	store, err := cache.Open(dir)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	cat, err := catalog.Open(store)
	if err != nil {
		return nil, err
	}
	defer cat.Close()
	var entries []*catalog.Entry
	var uses []catalog.Use
	for _, l := range listed {
		for _, e := range remoteEntries(rem.String(), l) {
			entries = append(entries, e)
			for _, u := range l.Usage {
				for range min(u.Uses, 1000) {
					uses = append(uses, catalog.Use{ID: e.ID, Name: e.Name, Event: catalog.Event{Who: u.Runner, When: u.Last, What: catalog.UseFetch}})
				}
			}
		}
	}
	if err := cat.Record(entries, uses); err != nil {
		return nil, err
	}
	return cat.Run(ctx, q)
}

// remoteEntries are the catalog entries of a listed target write, one
// per target name it was written for.
func remoteEntries(base string, l remote.Listed) []*catalog.Entry {
	a := l.Manifest.Annotations
	split := func(s string) []string {
		if s == "" {
			return []string{}
		}
		return strings.Split(s, ",")
	}
	created, _ := time.Parse(time.RFC3339, a["org.opencontainers.image.created"])
	var size int64
	var arts []catalog.Artifact
	for _, o := range l.Record.Outputs {
		size += o.Size
		arts = append(arts, catalog.Artifact{Path: o.Name, Digest: o.Digest, Size: o.Size, MediaType: o.MediaType})
	}
	var out []*catalog.Entry
	for _, name := range split(a[remote.AnnotationTargets]) {
		e := &catalog.Entry{
			ID: l.Key.Digest, Name: name, Type: catalog.TypeTarget,
			Owner: a[remote.AnnotationOwner], OS: a[remote.AnnotationOS], Arch: a[remote.AnnotationArch],
			Description: a["org.opencontainers.image.description"], Tags: split(a[remote.AnnotationTags]),
			Permission: a[remote.AnnotationPermission], Kind: a[remote.AnnotationKind], Aim: catalog.Aim(a[remote.AnnotationKind]),
			Status: catalog.StatusBuilt, Created: created, Size: size, Image: a[remote.AnnotationImage],
			Pedigree:  split(a[remote.AnnotationPedigree]),
			Locations: []string{base + "/" + l.Key.Namespace + "@" + l.Desc.Digest.String()},
			Artifacts: arts,
			Stages:    []catalog.Stage{{Digest: l.Key.Digest, Kind: a[remote.AnnotationKind], Inputs: l.Record.Inputs, Size: size}},
		}
		if id := a[remote.AnnotationImageID]; id != "" {
			e.ImageID = digest.Digest(id)
		}
		out = append(out, e)
	}
	return out
}

// shareRegistrations attaches each registered target's
// registrations.json to its target write in the shared repository.
func shareRegistrations(ctx context.Context, rf remoteFlags, plan *planner.Plan, outDir string, results []register.Result) error {
	repo, err := rf.shared(nil)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range results {
		if r.Err != nil || len(r.Registrations) == 0 {
			continue
		}
		var t *planner.Target
		for _, pt := range plan.Targets {
			if pt.Target.Name == r.Target {
				t = pt
			}
		}
		if t == nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(outDir, r.Target, register.RecordsName))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		k := repo.Key(t.Write)
		if err := repo.Remote.PushReferrer(ctx, k, remote.ArtifactRegistrations, r.Target+"/"+register.RecordsName, data); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
