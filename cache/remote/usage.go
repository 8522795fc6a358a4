package remote

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// usageTag is the tag of runner's usage record of target d: each
// runner writes its own, so no shared state is ever rewritten by two.
func usageTag(d digest.Digest, runner string) string {
	return "usage-" + d.Encoded()[:32] + "-" + runner
}

// Runner cleans a runner name for a tag: the host name when empty.
func Runner(name string) string {
	if name == "" {
		name, _ = os.Hostname()
	}
	name = strings.Trim(nsPart.ReplaceAllString(strings.ToLower(name), "-"), "._-")
	if name == "" {
		name = "unknown"
	}
	if len(name) > 60 {
		name = name[:60]
	}
	return name
}

// Use is one runner's usage of a target in the shared repository.
type Use struct {
	Runner string
	Uses   int
	Last   time.Time
}

// RecordUse counts one use of target k by runner in its usage record.
func (r *Remote) RecordUse(ctx context.Context, k Key, runner string) error {
	b, err := r.Repo(k.Namespace)
	if err != nil {
		return err
	}
	runner = Runner(runner)
	tag := usageTag(k.Digest, runner)
	u := Use{Runner: runner}
	if desc, rc, err := fetchReference(ctx, b, tag); err == nil {
		data, err := content.ReadAll(rc, desc)
		rc.Close()
		if err == nil {
			u, _ = parseUse(data)
		}
	} else if !errors.Is(err, errdef.ErrNotFound) {
		return r.wrap("reading usage from", err)
	}
	u.Uses++
	u.Last = time.Now().UTC()
	if err := pushBytes(ctx, b, ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data); err != nil {
		return r.wrap("recording usage in", err)
	}
	_, err = pushManifest(ctx, b, ocispec.Manifest{
		ArtifactType: ArtifactUsage, Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{ocispec.DescriptorEmptyJSON},
		Annotations: map[string]string{
			AnnotationPrefix + "target": k.Digest.String(),
			AnnotationRunner:            runner,
			AnnotationUses:              strconv.Itoa(u.Uses),
			AnnotationLastUsed:          u.Last.Format(time.RFC3339),
		},
	}, tag)
	return r.wrap("recording usage in", err)
}

func parseUse(manifest []byte) (Use, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(manifest, &m); err != nil {
		return Use{}, err
	}
	u := Use{Runner: m.Annotations[AnnotationRunner]}
	u.Uses, _ = strconv.Atoi(m.Annotations[AnnotationUses])
	u.Last, _ = time.Parse(time.RFC3339, m.Annotations[AnnotationLastUsed])
	return u, nil
}

// Listed is a target write in the shared repository, as listed.
type Listed struct {
	Object
	Usage []Use
}

// ListTargets lists every target write under the base (in every
// namespace the registry lists, or in namespaces when given) with its
// manifest's annotations, its record and every runner's usage.
func (r *Remote) ListTargets(ctx context.Context, namespaces []string) ([]Listed, error) {
	if namespaces == nil {
		var err error
		if namespaces, err = r.root.Repositories(ctx); err != nil {
			return nil, err
		}
	}
	var mu sync.Mutex
	var out []Listed
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * r.jobs())
	for _, ns := range namespaces {
		b, err := r.Repo(ns)
		if err != nil {
			return nil, err
		}
		var tags []string
		err = b.Tags(gctx, "", func(ts []string) error { tags = append(tags, ts...); return nil })
		if errors.Is(err, errdef.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, r.wrap("listing "+ns+" in", err)
		}
		uses := map[string][]string{} // target hex prefix -> usage tags
		for _, t := range tags {
			if rest, ok := strings.CutPrefix(t, "usage-"); ok && len(rest) > 33 {
				uses[rest[:32]] = append(uses[rest[:32]], t)
			}
		}
		for _, t := range tags {
			hex, ok := strings.CutPrefix(t, targetTag)
			if !ok {
				continue
			}
			d := digest.NewDigestFromEncoded(digest.SHA256, hex)
			if d.Validate() != nil {
				continue
			}
			g.Go(func() error {
				o, err := r.Get(gctx, Key{Namespace: ns, Kind: Target, Digest: d})
				if err != nil {
					return err
				}
				l := Listed{Object: *o}
				for _, ut := range uses[hex[:32]] {
					desc, rc, err := fetchReference(gctx, b, ut)
					if err != nil {
						continue
					}
					data, err := content.ReadAll(rc, desc)
					rc.Close()
					if u, perr := parseUse(data); err == nil && perr == nil {
						l.Usage = append(l.Usage, u)
					}
				}
				mu.Lock()
				out = append(out, l)
				mu.Unlock()
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Listed) int {
		if c := strings.Compare(a.Key.Namespace, b.Key.Namespace); c != 0 {
			return c
		}
		return strings.Compare(string(a.Key.Digest), string(b.Key.Digest))
	})
	return out, nil
}
