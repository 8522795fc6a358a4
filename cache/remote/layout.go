package remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"
)

// Artifact types and media types of what fgimg stores.
const (
	// ArtifactStage is a stage result's manifest.
	ArtifactStage = "application/vnd.fgimg.stage.v1"
	// ArtifactTarget is a target write's manifest.
	ArtifactTarget = "application/vnd.fgimg.target.v1"
	// ArtifactTargetManifest is a referrer holding OUT/<target>/manifest.json.
	ArtifactTargetManifest = "application/vnd.fgimg.target-manifest.v1+json"
	// ArtifactSBOM is a referrer holding a target's SPDX SBOM.
	ArtifactSBOM = "application/spdx+json"
	// ArtifactRegistrations is a referrer holding registrations.json.
	ArtifactRegistrations = "application/vnd.fgimg.registrations.v1+json"
	// ArtifactUsage is a referrer holding one runner's usage of a target.
	ArtifactUsage = "application/vnd.fgimg.usage.v1+json"
	// MediaTypeRecord is the config of stage and target manifests: the
	// cache.Record of the stage or write.
	MediaTypeRecord = "application/vnd.fgimg.record.v1+json"
	// MediaTypeBlob is a stored blob's media type where it has none of
	// its own (a stage's layer) or one a registry would misread.
	MediaTypeBlob = "application/vnd.fgimg.blob.v1"
)

// Tag prefixes; see the package comment.
const (
	stageTag    = "stage-"
	targetTag   = "target-"
	referrerTag = "ref-"
)

// Annotations a target's manifest carries: its catalog fields.
const (
	AnnotationPrefix      = "org.fgimg."
	AnnotationTargets     = AnnotationPrefix + "targets" // comma-separated target names
	AnnotationKind        = AnnotationPrefix + "kind"
	AnnotationImage       = AnnotationPrefix + "image"
	AnnotationImageID     = AnnotationPrefix + "image-id"
	AnnotationOwner       = AnnotationPrefix + "owner"
	AnnotationPermission  = AnnotationPrefix + "permission"
	AnnotationOS          = AnnotationPrefix + "os"
	AnnotationArch        = AnnotationPrefix + "arch"
	AnnotationTags        = AnnotationPrefix + "tags" // comma-separated
	AnnotationPedigree    = AnnotationPrefix + "pedigree"
	AnnotationSize        = AnnotationPrefix + "size"
	AnnotationRunner      = AnnotationPrefix + "runner"
	AnnotationUses        = AnnotationPrefix + "uses"
	AnnotationLastUsed    = AnnotationPrefix + "last-used"
	annotationDescription = ocispec.AnnotationDescription
)

// Kind says which kind of object a record is stored as.
type Kind int

const (
	// Stage is an image or adaptation stage's result.
	Stage Kind = iota
	// Target is a target write's artifacts.
	Target
)

func (k Kind) tag(d digest.Digest) string {
	if k == Target {
		return targetTag + d.Encoded()
	}
	return stageTag + d.Encoded()
}

func (k Kind) artifactType() string {
	if k == Target {
		return ArtifactTarget
	}
	return ArtifactStage
}

// Key names one object in the shared repository: a stage or target
// digest in a namespace.
type Key struct {
	Namespace string
	Kind      Kind
	Digest    digest.Digest
}

func (k Key) String() string { return k.Namespace + ":" + k.Kind.tag(k.Digest) }

// Object is a stored stage or target: its manifest and record.
type Object struct {
	Key      Key
	Desc     ocispec.Descriptor // of the manifest
	Manifest ocispec.Manifest
	Record   cache.Record
}

var nsPart = regexp.MustCompile(`[^a-z0-9._-]+`)

// Namespace is the repository, below the base, of an image with this
// owner and permission: "private" under users/OWNER, "group:NAME" under
// groups/NAME, "public" under public (the configurable public prefix,
// "public" when empty). Names are lower-cased and characters a
// repository path may not hold become "-".
func Namespace(owner, permission, public string) string {
	clean := func(s string) string {
		s = strings.Trim(nsPart.ReplaceAllString(strings.ToLower(s), "-"), "._-")
		if s == "" {
			return "unknown"
		}
		return s
	}
	if public == "" {
		public = "public"
	}
	switch {
	case permission == "public":
		return strings.Trim(public, "/")
	case strings.HasPrefix(permission, "group:"):
		return "groups/" + clean(strings.TrimPrefix(permission, "group:"))
	}
	return "users/" + clean(owner)
}

// encodeRecord is the record as stored: without the log (not shared).
func encodeRecord(rec cache.Record) ([]byte, error) {
	rec.Log = ""
	return json.Marshal(rec)
}

// decodeObject checks a fetched manifest and record against the key.
func decodeObject(k Key, desc ocispec.Descriptor, mb, rb []byte) (*Object, error) {
	o := &Object{Key: k, Desc: desc}
	if err := json.Unmarshal(mb, &o.Manifest); err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", k, err)
	}
	if o.Manifest.ArtifactType != k.Kind.artifactType() || o.Manifest.Config.MediaType != MediaTypeRecord {
		return nil, fmt.Errorf("%s: not an fgimg %s (artifactType %q)", k, k.Kind.artifactType(), o.Manifest.ArtifactType)
	}
	if err := json.Unmarshal(rb, &o.Record); err != nil {
		return nil, fmt.Errorf("%s: record: %w", k, err)
	}
	if o.Record.Digest != k.Digest {
		return nil, fmt.Errorf("%s: record names digest %s", k, o.Record.Digest)
	}
	if len(o.Record.Outputs) != len(o.Manifest.Layers) {
		return nil, fmt.Errorf("%s: record has %d outputs, manifest %d layers", k, len(o.Record.Outputs), len(o.Manifest.Layers))
	}
	for i, out := range o.Record.Outputs {
		l := o.Manifest.Layers[i]
		if l.Digest != out.Digest || l.Size != out.Size {
			return nil, fmt.Errorf("%s: output %q differs from its layer", k, out.Name)
		}
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("%s: layer %d: %w", k, i, err)
		}
	}
	return o, nil
}

// fetchObject reads the object k from b; a missing tag gives an error
// matching errdef.ErrNotFound.
func fetchObject(ctx context.Context, b Backend, k Key) (*Object, error) {
	desc, rc, err := fetchReference(ctx, b, k.Kind.tag(k.Digest))
	if err != nil {
		return nil, err
	}
	mb, err := content.ReadAll(rc, desc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", k, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil {
		return nil, fmt.Errorf("%s: manifest: %w", k, err)
	}
	if m.Config.Size > 1<<20 {
		return nil, fmt.Errorf("%s: record of %d bytes is too large", k, m.Config.Size)
	}
	rb, err := content.FetchAll(ctx, b, m.Config)
	if err != nil {
		return nil, fmt.Errorf("%s: record: %w", k, err)
	}
	return decodeObject(k, desc, mb, rb)
}

// fetchReference resolves and fetches a tag in one request where the
// back end can (registry.ReferenceFetcher), else in two.
func fetchReference(ctx context.Context, b Backend, tag string) (ocispec.Descriptor, interface {
	Read([]byte) (int, error)
	Close() error
}, error) {
	if rf, ok := b.(registry.ReferenceFetcher); ok {
		return rf.FetchReference(ctx, tag)
	}
	desc, err := b.Resolve(ctx, tag)
	if err != nil {
		return ocispec.Descriptor{}, nil, err
	}
	rc, err := b.Fetch(ctx, desc)
	return desc, rc, err
}

// pushBytes pushes a small blob unless the back end has it.
func pushBytes(ctx context.Context, b Backend, desc ocispec.Descriptor, data []byte) error {
	if ok, err := b.Exists(ctx, desc); err == nil && ok {
		return nil
	}
	if err := b.Push(ctx, desc, bytes.NewReader(data)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return err
	}
	return nil
}

// pushManifest pushes a manifest, tags it and, for a referrer on a back
// end without the referrers API of its own, adds it to its subject's
// tag-schema referrers index.
func pushManifest(ctx context.Context, b Backend, m ocispec.Manifest, tag string) (ocispec.Descriptor, error) {
	m.Versioned = specs.Versioned{SchemaVersion: 2}
	m.MediaType = ocispec.MediaTypeImageManifest
	data, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageManifest, data)
	desc.ArtifactType = m.ArtifactType
	desc.Annotations = m.Annotations
	plain := ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}
	if err := pushBytes(ctx, b, plain, data); err != nil {
		return ocispec.Descriptor{}, err
	}
	if tag == "" {
		tag = referrerTag + desc.Digest.Encoded()
	}
	if err := b.Tag(ctx, plain, tag); err != nil {
		return ocispec.Descriptor{}, err
	}
	if m.Subject != nil {
		if _, native := b.(registry.ReferrerLister); !native {
			if err := addToReferrersIndex(ctx, b, *m.Subject, desc); err != nil {
				return ocispec.Descriptor{}, fmt.Errorf("adding to the referrers index: %w", err)
			}
		}
	}
	return desc, nil
}

// fallbackTag is the OCI tag schema's tag of subject's referrers index.
func fallbackTag(subject digest.Digest) string {
	return subject.Algorithm().String() + "-" + subject.Encoded()
}

// addToReferrersIndex keeps the tag-schema referrers index of subject
// for back ends that lack the referrers API and do not keep it
// themselves (remote.Repository keeps it on registries without one).
func addToReferrersIndex(ctx context.Context, b Backend, subject, ref ocispec.Descriptor) error {
	idx, err := readReferrersIndex(ctx, b, subject.Digest)
	if err != nil {
		return err
	}
	for _, m := range idx.Manifests {
		if m.Digest == ref.Digest {
			return nil
		}
	}
	idx.Manifests = append(idx.Manifests, ref)
	idx.Versioned = specs.Versioned{SchemaVersion: 2}
	idx.MediaType = ocispec.MediaTypeImageIndex
	data, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	desc := content.NewDescriptorFromBytes(ocispec.MediaTypeImageIndex, data)
	if err := pushBytes(ctx, b, desc, data); err != nil {
		return err
	}
	return b.Tag(ctx, desc, fallbackTag(subject.Digest))
}

func readReferrersIndex(ctx context.Context, b Backend, subject digest.Digest) (ocispec.Index, error) {
	var idx ocispec.Index
	desc, rc, err := fetchReference(ctx, b, fallbackTag(subject))
	if errors.Is(err, errdef.ErrNotFound) {
		return idx, nil
	}
	if err != nil {
		return idx, err
	}
	defer rc.Close()
	data, err := content.ReadAll(rc, desc)
	if err != nil {
		return idx, err
	}
	return idx, json.Unmarshal(data, &idx)
}

// referrers lists the referrers of subject with artifactType (any when
// empty): the referrers API where the back end has it (remote.Repository
// falls back to the tag schema by itself), else the tag schema's index.
func referrers(ctx context.Context, b Backend, subject ocispec.Descriptor, artifactType string) ([]ocispec.Descriptor, error) {
	if rl, ok := b.(registry.ReferrerLister); ok {
		var out []ocispec.Descriptor
		err := rl.Referrers(ctx, subject, artifactType, func(r []ocispec.Descriptor) error {
			out = append(out, r...)
			return nil
		})
		return out, err
	}
	idx, err := readReferrersIndex(ctx, b, subject.Digest)
	if err != nil {
		return nil, err
	}
	var out []ocispec.Descriptor
	for _, m := range idx.Manifests {
		if artifactType == "" || m.ArtifactType == artifactType {
			out = append(out, m)
		}
	}
	return out, nil
}

// created is the manifest's creation annotation, from the record, so
// that pushing the same record twice gives the same manifest.
func created(rec cache.Record) string {
	t := rec.Created
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	return t.UTC().Format(time.RFC3339)
}
