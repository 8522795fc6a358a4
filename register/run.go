package register

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/internal/bytesize"
	"github.com/opencontainers/go-digest"
)

// Opener opens the Cloud a File registers into. Clouds are shared by
// the targets that name the same one, so they must be safe for
// concurrent use.
type Opener func(ctx context.Context, f *File) (Cloud, error)

// Options says what Run registers and how.
type Options struct {
	// Out is the output directory; Targets the names of the targets in
	// it to register.
	Out     string
	Targets []string
	// Open opens a File's cloud.
	Open Opener
	// DryRun plans without changing anything.
	DryRun bool
	// Replace retires older images for every target, as if each
	// register.json said replace.
	Replace bool
	// Jobs is how many targets are registered at once (1 when < 1).
	Jobs int
	// Store, when not nil, keeps the registration records too; Memo
	// remembers artifact digests so unchanged files are not reread.
	Store *cache.Store
	Memo  Memo
	// Extra properties set on uploads where a step does not set them
	// (fgimg_template_commit).
	Extra map[string]string
	// Retry is the backoff for temporary faults; zero: DefaultRetry.
	Retry Retry
	// Log receives each target's plan and outcome as text; nil: none.
	Log io.Writer
}

// Result is what Run did for one target.
type Result struct {
	Target string `json:"target"`
	// TargetDigest is the target build's digest from its register.json
	// (with Target, its catalog entry).
	TargetDigest digest.Digest `json:"target_digest,omitempty"`
	Plan         *Plan         `json:"plan,omitempty"`
	// Registrations are the target's images after this run (none on a
	// dry run).
	Registrations []Registration `json:"registrations,omitempty"`
	Uploaded      int64          `json:"uploaded_bytes"`
	Error         string         `json:"error,omitempty"`
	Err           error          `json:"-"`
}

// Run registers each target: it loads and verifies the target's
// register.json and artifacts, asks the cloud what it has, plans,
// prints the plan, and (unless DryRun) applies it and records the
// registrations. Targets are independent: one failing does not stop the
// others. Results are in the order of o.Targets.
func Run(ctx context.Context, o Options) []Result {
	if o.Retry.Attempts == 0 {
		o.Retry = DefaultRetry
	}
	jobs := max(o.Jobs, 1)
	r := &runner{o: o, clouds: map[string]*openCloud{}}
	results := make([]Result, len(o.Targets))
	sem := make(chan struct{}, jobs)
	var wg sync.WaitGroup
	for i, name := range o.Targets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = r.target(ctx, name)
		}()
	}
	wg.Wait()
	return results
}

type runner struct {
	o      Options
	logMu  sync.Mutex
	mu     sync.Mutex
	clouds map[string]*openCloud
}

// openCloud is a cloud opened once for every target that names it, and
// the images fgimg registered there, listed once for all those targets
// (each target's plan and apply change only its own images).
type openCloud struct {
	once  sync.Once
	cloud Cloud
	err   error

	listOnce sync.Once
	found    []Image
	listErr  error
}

func (r *runner) cloud(ctx context.Context, f *File) (*openCloud, error) {
	key := f.Kind + "\x00" + f.Cloud
	r.mu.Lock()
	oc := r.clouds[key]
	if oc == nil {
		oc = &openCloud{}
		r.clouds[key] = oc
	}
	r.mu.Unlock()
	oc.once.Do(func() { oc.cloud, oc.err = r.o.Open(ctx, f) })
	return oc, oc.err
}

// list returns every image fgimg registered in the cloud, asking it
// once per run.
func (r *runner) list(ctx context.Context, oc *openCloud) ([]Image, error) {
	oc.listOnce.Do(func() {
		oc.listErr = retry(ctx, r.o.Retry, func() error {
			var err error
			oc.found, err = oc.cloud.Find(ctx, "")
			return err
		})
	})
	return oc.found, oc.listErr
}

func (r *runner) log(format string, args ...any) {
	if r.o.Log == nil {
		return
	}
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.o.Log, format, args...)
}

func (r *runner) target(ctx context.Context, name string) (res Result) {
	res.Target = name
	defer func() {
		if res.Err != nil {
			res.Error = res.Err.Error()
		}
	}()
	start := time.Now()
	t, err := Load(r.o.Out, name)
	if err != nil {
		res.Err = err
		return res
	}
	res.TargetDigest = t.File.TargetDigest
	t.File.Replace = t.File.Replace || r.o.Replace
	if err := t.Verify(r.o.Memo); err != nil {
		res.Err = err
		return res
	}
	oc, err := r.cloud(ctx, &t.File)
	if err != nil {
		res.Err = err
		return res
	}
	cloud := oc.cloud
	found, err := r.list(ctx, oc) // NewPlan keeps the target's own
	if err != nil {
		res.Err = fmt.Errorf("target %q: asking %s for its images: %w", name, cloud, err)
		return res
	}
	res.Plan = NewPlan(cloud.String(), &t.File, found)
	r.log("%s", planText(res.Plan, &t.File, cloud))
	if r.o.DryRun {
		return res
	}
	done, err := Apply(ctx, cloud, t, res.Plan, r.o.Extra, r.o.Retry)
	for _, d := range done {
		if d.Uploaded {
			res.Uploaded += t.step(d.Step).Size
		}
	}
	if len(done) > 0 {
		recs, rerr := Record(r.o.Store, t, cloud.String(), done, time.Now())
		if rerr != nil && err == nil {
			err = rerr
		}
		if recs != nil {
			res.Registrations = recs.Images
		}
	}
	if err != nil {
		res.Err = fmt.Errorf("target %q: %w", name, err)
		return res
	}
	r.log("target %q: %s in %.1fs\n", name, summary(res.Plan, done), time.Since(start).Seconds())
	return res
}

// summary says what an applied plan did.
func summary(p *Plan, done []Applied) string {
	count := map[string]int{}
	for _, a := range p.Actions {
		count[a.Op]++
	}
	n, bytes := p.Uploads()
	s := fmt.Sprintf("%d uploaded (%s), %d unchanged", n, bytesize.Format(bytes), count[OpSkip])
	if c := count[OpDelete]; c > 0 {
		s += fmt.Sprintf(", %d stale deleted", c)
	}
	if c := count[OpRetire]; c > 0 {
		s += fmt.Sprintf(", %d retired", c)
	}
	for _, d := range done {
		s += fmt.Sprintf("; %s is image %s", d.Step, d.Image.ID)
	}
	return s
}

// Explainer is a Cloud that can say what it will do for each planned
// action: the commands it runs and the files it changes (bare metal, where
// a reviewer of -dry-run wants to see them). Its lines are printed under
// the action.
type Explainer interface {
	Explain(a Action, s *Step) []string
}

// planText is the plan as printed, with the cloud's explanations.
func planText(p *Plan, f *File, cloud Cloud) string {
	e, ok := cloud.(Explainer)
	if !ok {
		return p.String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "target %q → %s\n", p.Target, p.Cloud)
	for _, a := range p.Actions {
		b.WriteString("  " + a.String() + "\n")
		var s *Step
		for i := range f.Steps {
			if f.Steps[i].ID == a.Step {
				s = &f.Steps[i]
			}
		}
		for _, line := range e.Explain(a, s) {
			b.WriteString("      " + line + "\n")
		}
	}
	return b.String()
}
