package planner

import (
	"os"

	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/stages"
	"github.com/fgimg/fgimg/targets"
	"github.com/hashicorp/hcl/v2"
	"github.com/opencontainers/go-digest"
)

// Store is what the planner asks of a cache: is a stage's result stored?
type Store interface {
	Has(digest.Digest) bool
}

// EmptyStore is a cache that holds nothing.
type EmptyStore struct{}

// Has reports false: nothing is stored.
func (EmptyStore) Has(digest.Digest) bool { return false }

// Status says whether a stage must be built.
type Status string

const (
	StatusBuild  Status = "build"
	StatusCached Status = "cached"
	// StatusPull: not cached here, but the shared repository has it
	// (set by the caller that asked it, not by New).
	StatusPull Status = "pull"
)

// NodeKind says what a node of the plan does.
type NodeKind string

const (
	// ImageStage is one phase of an image: a layer in the cache.
	ImageStage NodeKind = "image stage"
	// AdaptStage changes an image for a target before it is written (a
	// disk's fstab): a layer in the cache on top of the image's last
	// stage, shared by every target with the same adaptation of the
	// same image (targets.Adapter).
	AdaptStage NodeKind = "adaptation stage"
	// TargetWrite writes a target kind's artifacts from an image's last
	// stage: artifacts in the cache, exported to OUT/<target>/ for every
	// target it stands for.
	TargetWrite NodeKind = "target write"
)

// Stage is one node of the plan: a spec on top of an input stage.
type Stage struct {
	Digest digest.Digest
	Spec   stages.Spec
	Input  *Stage // nil for an origin
	Status Status
	Node   NodeKind
	// Image is, for an image stage, the first image (in declaration
	// order) whose chain holds it; for an adaptation stage, the image it
	// adapts. Not hashed.
	Image *lang.Image
	// Targets are, for a target write, the targets it writes, in plan
	// order: targets of one kind, image and spec share one write. Not
	// hashed.
	Targets []*Target
}

// Kind is the stage kind: "bootstrap", "packages", …, or a target kind.
func (s *Stage) Kind() string { return s.Spec.Kind() }

// Image is a planned image: its whole chain of stages, origin first.
type Image struct {
	Image  *lang.Image
	Stages []*Stage
}

// ID is the digest of the image's last stage.
func (im *Image) ID() digest.Digest { return im.Stages[len(im.Stages)-1].Digest }

// Target is a planned target: the write of its artifacts, on top of its
// image's last stage and the kind's adaptation stages, shared with every
// target of the same kind and spec made from the same image.
type Target struct {
	Target *lang.Target
	Kind   targets.Kind
	Image  *Image
	// Adapt are the adaptation stages the write stands on, bottom first:
	// empty for kinds that write the image as it is.
	Adapt []*Stage
	Write *Stage
}

// Chain is the stages the target's write reads: the image's chain and
// its adaptation stages, origin first.
func (t *Target) Chain() []*Stage {
	return append(append([]*Stage(nil), t.Image.Stages...), t.Adapt...)
}

// Plan is the stage graph of a configuration.
type Plan struct {
	// Stages holds every stage once, inputs before the stages above them.
	Stages  []*Stage
	Images  []*Image
	Targets []*Target
}

// HashMemo remembers file content digests by path and stat data, so that
// planning need not reread unchanged source files.
type HashMemo interface {
	Get(path string, fi os.FileInfo) (digest.Digest, bool)
	Put(path string, fi os.FileInfo, d digest.Digest)
}

// Options selects what to plan and where to look for cached stages.
type Options struct {
	Store Store    // nil: EmptyStore
	Memo  HashMemo // nil: every source file is hashed
	// Only and Except hold image or target names, globs allowed; see Select.
	Only, Except []string
}

// New compiles cfg into a plan. Images and targets are planned in
// declaration order; identical stages become one node.
func New(cfg *lang.Config, opts Options) (*Plan, hcl.Diagnostics) {
	if opts.Store == nil {
		opts.Store = EmptyStore{}
	}
	images, tgts, diags := Select(cfg, opts.Only, opts.Except)
	if diags.HasErrors() {
		return nil, diags
	}
	c := &compiler{
		store:  opts.Store,
		nodes:  map[digest.Digest]*Stage{},
		images: map[*lang.Image]*Image{},
		hashes: map[string]digest.Digest{},
		memo:   opts.Memo,
		plan:   &Plan{},
	}
	for _, im := range images {
		c.image(im)
	}
	for _, t := range tgts {
		c.target(t)
	}
	return c.plan, c.diags
}

type compiler struct {
	store  Store
	nodes  map[digest.Digest]*Stage
	images map[*lang.Image]*Image   // nil for an image that failed
	hashes map[string]digest.Digest // file content digests by host path
	memo   HashMemo
	plan   *Plan
	diags  hcl.Diagnostics
}

// add returns the node for spec on top of input, creating it once.
func (c *compiler) add(spec stages.Spec, input *Stage, node NodeKind, im *lang.Image) *Stage {
	var in digest.Digest
	if input != nil {
		in = input.Digest
	}
	d := stages.Digest(spec, in)
	if s, ok := c.nodes[d]; ok {
		return s
	}
	s := &Stage{Digest: d, Spec: spec, Input: input, Status: StatusBuild, Node: node, Image: im}
	if c.store.Has(d) {
		s.Status = StatusCached
	}
	c.nodes[d] = s
	c.plan.Stages = append(c.plan.Stages, s)
	return s
}

// image plans an image after its parent, once; it returns nil when the
// image cannot be planned (one diagnostic says why, however many images
// and targets stand on it).
func (c *compiler) image(im *lang.Image) *Image {
	if p, ok := c.images[im]; ok {
		return p
	}
	c.images[im] = nil // until planned: a failure is remembered too
	var chain []*Stage
	var top *Stage
	if im.Parent != nil {
		parent := c.image(im.Parent)
		if parent == nil {
			return nil
		}
		chain = append(chain, parent.Stages...)
		top = parent.Stages[len(parent.Stages)-1]
	} else {
		origin := c.originSpec(im)
		if origin == nil {
			return nil
		}
		top = c.add(origin, nil, ImageStage, im)
		chain = append(chain, top)
	}
	phases, ok := c.phaseSpecs(im)
	if !ok {
		return nil
	}
	for _, spec := range phases {
		top = c.add(spec, top, ImageStage, im)
		chain = append(chain, top)
	}
	p := &Image{Image: im, Stages: chain}
	c.images[im] = p
	c.plan.Images = append(c.plan.Images, p)
	return p
}

func (c *compiler) target(t *lang.Target) {
	kind, err := targets.For(t.Kind)
	if err != nil {
		c.errorf(t.DeclRange, "Target kind not buildable",
			"fgimg cannot build %s targets (%v); leave this one out with -except %s.", t.Kind, err, t.Name)
		return
	}
	im := c.image(t.Image)
	if im == nil {
		return
	}
	spec := kind.Spec(t)
	pt := &Target{Target: t, Kind: kind, Image: im}
	top := im.Stages[len(im.Stages)-1]
	if a, ok := kind.(targets.Adapter); ok {
		for _, as := range a.Adapt(spec, im.ID()) {
			top = c.add(as, top, AdaptStage, im.Image)
			pt.Adapt = append(pt.Adapt, top)
		}
	}
	w := c.add(spec, top, TargetWrite, nil)
	pt.Write = w
	w.Targets = append(w.Targets, pt)
	c.plan.Targets = append(c.plan.Targets, pt)
}

// Image returns the planned image named name, or nil.
func (p *Plan) Image(name string) *Image {
	for _, im := range p.Images {
		if im.Image.Name == name {
			return im
		}
	}
	return nil
}

// Counts returns how many stages are to be built and how many are cached.
func (p *Plan) Counts() (build, cached int) {
	for _, s := range p.Stages {
		switch s.Status {
		case StatusCached:
			cached++
		case StatusBuild:
			build++
		}
	}
	return build, cached
}

// Pulls returns how many stages are to be pulled from a shared repository.
func (p *Plan) Pulls() (n int) {
	for _, s := range p.Stages {
		if s.Status == StatusPull {
			n++
		}
	}
	return n
}
