// Package shared connects the build engine to a shared repository
// (cache/remote): where a planned stage or target write lives (its
// image's namespace), the catalog fields a target write carries, the
// referrers attached to it, and lookups asked in one batch before the
// walk.
package shared

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/remote"
	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/internal/swstack"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/planner"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Repo is the engine's Shared on a cache/remote.Remote.
type Repo struct {
	Remote *remote.Remote
	Store  *cache.Store
	// Public is the public namespace's prefix ("public" when empty).
	Public string
	// Runner names this machine in usage records (the host name when
	// empty).
	Runner string

	mu sync.Mutex
	// present says what Find learnt: whether the shared repository has
	// a stage; absent digests were not asked about.
	present map[digest.Digest]bool
}

var _ engine.Shared = (*Repo)(nil)

// meta is the catalog metadata of the image s belongs to.
func meta(s *planner.Stage) *lang.Image {
	if s.Node == planner.TargetWrite && len(s.Targets) > 0 {
		return s.Targets[0].Image.Image
	}
	return s.Image
}

// Key is where stage s lives in the shared repository.
func (r *Repo) Key(s *planner.Stage) remote.Key {
	k := remote.Key{Kind: remote.Stage, Digest: s.Digest}
	if s.Node == planner.TargetWrite {
		k.Kind = remote.Target
	}
	if im := meta(s); im != nil {
		k.Namespace = remote.Namespace(im.Meta.Owner, im.Meta.Permission, r.Public)
	} else {
		k.Namespace = remote.Namespace("", "public", r.Public)
	}
	return k
}

// Find looks up many stages, concurrently.
func (r *Repo) Find(ctx context.Context, stages []*planner.Stage) error {
	var keys []remote.Key
	for _, s := range stages {
		keys = append(keys, r.Key(s))
	}
	found, err := r.Remote.Lookup(ctx, keys)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.present == nil {
		r.present = map[digest.Digest]bool{}
	}
	for _, k := range keys {
		if _, ok := found[k]; ok {
			r.present[k.Digest] = true
		} else if err == nil {
			r.present[k.Digest] = false
		}
	}
	return err
}

// Known reports whether Find found s in the shared repository.
func (r *Repo) Known(s *planner.Stage) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.present[s.Digest]
}

// has says whether the shared repository has s, asking when Find did not.
func (r *Repo) has(ctx context.Context, s *planner.Stage) (bool, error) {
	r.mu.Lock()
	ok, asked := r.present[s.Digest]
	r.mu.Unlock()
	if asked {
		return ok, nil
	}
	err := r.Find(ctx, []*planner.Stage{s})
	return r.Known(s), err
}

// Pull pulls s when the shared repository has it. A target write
// pulled counts as a use of the shared catalog entry: this runner's
// usage record is updated (unless read-only).
func (r *Repo) Pull(ctx context.Context, s *planner.Stage) (bool, int64, error) {
	if ok, err := r.has(ctx, s); err != nil || !ok {
		return false, 0, err
	}
	o, err := r.Remote.Get(ctx, r.Key(s))
	if err != nil {
		return false, 0, err
	}
	n, err := r.Remote.Pull(ctx, r.Store, o)
	if err != nil {
		return false, n, err
	}
	if s.Node == planner.TargetWrite && !r.Remote.ReadOnly {
		if err := r.Remote.RecordUse(ctx, o.Key, r.Runner); err != nil {
			return true, n, fmt.Errorf("recording the use of %s: %w", o.Key, err)
		}
	}
	return true, n, nil
}

// Push pushes s unless the shared repository has it; a target write
// carries its catalog fields as annotations, and manifest.json of each
// of its targets and its SBOM as referrers.
func (r *Repo) Push(ctx context.Context, s *planner.Stage) (bool, error) {
	if r.Remote.ReadOnly {
		return false, nil
	}
	if ok, err := r.has(ctx, s); err != nil || ok {
		return false, err
	}
	k := r.Key(s)
	var ann map[string]string
	if s.Node == planner.TargetWrite {
		ann = annotations(s)
	}
	if _, err := r.Remote.Push(ctx, r.Store, k, ann); err != nil {
		return false, err
	}
	if s.Node == planner.TargetWrite {
		if err := r.attach(ctx, k, s); err != nil {
			return true, err
		}
	}
	r.mu.Lock()
	r.present[s.Digest] = true
	r.mu.Unlock()
	return true, nil
}

// attach pushes the referrers of a target write.
func (r *Repo) attach(ctx context.Context, k remote.Key, s *planner.Stage) error {
	rec, err := r.Store.Record(s.Digest)
	if err != nil {
		return err
	}
	for _, t := range s.Targets {
		if err := r.Remote.PushReferrer(ctx, k, remote.ArtifactTargetManifest, t.Target.Name+"/manifest.json", engine.TargetManifest(t, rec)); err != nil {
			return err
		}
	}
	for _, o := range rec.Outputs {
		if o.MediaType != swstack.SPDXMediaType {
			continue
		}
		f, err := r.Store.OpenBlob(o.Digest)
		if err != nil {
			return err
		}
		data, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return err
		}
		if err := r.Remote.PushReferrer(ctx, k, remote.ArtifactSBOM, o.Name, data); err != nil {
			return err
		}
	}
	return nil
}

// annotations are the catalog fields of a target write.
func annotations(s *planner.Stage) map[string]string {
	t := s.Targets[0]
	im := t.Image.Image
	var names []string
	for _, t := range s.Targets {
		names = append(names, t.Target.Name)
	}
	var pedigree []string
	for _, a := range im.Pedigree() {
		pedigree = append(pedigree, a.Name)
	}
	ann := map[string]string{
		ocispec.AnnotationTitle:     strings.Join(names, ","),
		remote.AnnotationTargets:    strings.Join(names, ","),
		remote.AnnotationKind:       t.Target.Kind,
		remote.AnnotationImage:      im.Name,
		remote.AnnotationImageID:    t.Image.ID().String(),
		remote.AnnotationOwner:      im.Meta.Owner,
		remote.AnnotationPermission: im.Meta.Permission,
		remote.AnnotationOS:         im.Meta.OS,
		remote.AnnotationArch:       im.Meta.Arch,
		remote.AnnotationTags:       strings.Join(im.Meta.Tags, ","),
		remote.AnnotationPedigree:   strings.Join(pedigree, ","),
	}
	if im.Meta.Description != "" {
		ann[ocispec.AnnotationDescription] = im.Meta.Description
	}
	for k, v := range ann {
		if v == "" {
			delete(ann, k)
		}
	}
	return ann
}

// stackKeys are the keys of the software stack records
// (engine.StackKey) of images, each in its image's namespace.
func (r *Repo) stackKeys(images []*planner.Image) []remote.Key {
	var keys []remote.Key
	for _, im := range images {
		keys = append(keys, remote.Key{
			Namespace: remote.Namespace(im.Image.Meta.Owner, im.Image.Meta.Permission, r.Public),
			Kind:      remote.Stage, Digest: engine.StackKey(im.ID()),
		})
	}
	return keys
}

// PullStacks pulls the software stack records of images that the store
// lacks and the shared repository has, so that the catalog need not
// unpack a pulled image to read its stack.
func (r *Repo) PullStacks(ctx context.Context, images []*planner.Image) error {
	var want []remote.Key
	for _, k := range r.stackKeys(images) {
		if !r.Store.Has(k.Digest) {
			want = append(want, k)
		}
	}
	found, err := r.Remote.Lookup(ctx, want)
	for k := range found {
		o, gerr := r.Remote.Get(ctx, k)
		if gerr == nil {
			_, gerr = r.Remote.Pull(ctx, r.Store, o)
		}
		err = errors.Join(err, gerr)
	}
	return err
}

// PushStacks pushes the software stack records of images that the store
// has and the shared repository lacks (nothing when read-only).
func (r *Repo) PushStacks(ctx context.Context, images []*planner.Image) error {
	if r.Remote.ReadOnly {
		return nil
	}
	var have []remote.Key
	for _, k := range r.stackKeys(images) {
		if r.Store.Has(k.Digest) {
			have = append(have, k)
		}
	}
	found, err := r.Remote.Lookup(ctx, have)
	if err != nil {
		return err
	}
	for _, k := range have {
		if _, ok := found[k]; !ok {
			if _, perr := r.Remote.Push(ctx, r.Store, k, nil); perr != nil {
				err = errors.Join(err, perr)
			}
		}
	}
	return err
}
