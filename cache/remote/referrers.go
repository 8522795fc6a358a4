package remote

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
)

// PushReferrer attaches data (a file called name) to the object k, which
// must be in the shared repository, as a referrer with artifactType, and
// tags it so that garbage collection keeps it.
func (r *Remote) PushReferrer(ctx context.Context, k Key, artifactType, name string, data []byte) error {
	if r.ReadOnly {
		return fmt.Errorf("shared repository %s is read-only", r.root)
	}
	return r.wrap("attaching "+name+" to "+k.String()+" in", r.pushReferrer(ctx, k, artifactType, name, data))
}

func (r *Remote) pushReferrer(ctx context.Context, k Key, artifactType, name string, data []byte) error {
	b, err := r.Repo(k.Namespace)
	if err != nil {
		return err
	}
	subject, err := b.Resolve(ctx, k.Kind.tag(k.Digest))
	if err != nil {
		return err
	}
	subject = ocispec.Descriptor{MediaType: subject.MediaType, Digest: subject.Digest, Size: subject.Size}
	layer := ocispec.Descriptor{MediaType: artifactType, Digest: digest.FromBytes(data), Size: int64(len(data)),
		Annotations: map[string]string{ocispec.AnnotationTitle: name}}
	if err := pushBytes(ctx, b, layer, data); err != nil {
		return err
	}
	if err := pushBytes(ctx, b, ocispec.DescriptorEmptyJSON, ocispec.DescriptorEmptyJSON.Data); err != nil {
		return err
	}
	_, err = pushManifest(ctx, b, ocispec.Manifest{
		ArtifactType: artifactType, Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{layer},
		Subject: &subject, Annotations: map[string]string{ocispec.AnnotationTitle: name},
	}, "")
	return err
}

// Referrers lists the referrers of object k with artifactType (any when
// empty).
func (r *Remote) Referrers(ctx context.Context, k Key, artifactType string) ([]ocispec.Descriptor, error) {
	b, err := r.Repo(k.Namespace)
	if err != nil {
		return nil, err
	}
	subject, err := b.Resolve(ctx, k.Kind.tag(k.Digest))
	if err != nil {
		return nil, r.wrap("reading "+k.String()+" from", err)
	}
	refs, err := referrers(ctx, b, subject, artifactType)
	return refs, r.wrap("listing the referrers of "+k.String()+" in", err)
}

// ReadReferrer returns the content of a referrer's one file.
func (r *Remote) ReadReferrer(ctx context.Context, k Key, ref ocispec.Descriptor) ([]byte, error) {
	b, err := r.Repo(k.Namespace)
	if err != nil {
		return nil, err
	}
	mb, err := content.FetchAll(ctx, b, ref)
	if err != nil {
		return nil, r.wrap("reading a referrer of "+k.String()+" from", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(mb, &m); err != nil || len(m.Layers) != 1 || m.Layers[0].Size > 64<<20 {
		return nil, fmt.Errorf("referrer %s of %s: not one small file", ref.Digest, k)
	}
	data, err := content.FetchAll(ctx, b, m.Layers[0])
	return data, r.wrap("reading a referrer of "+k.String()+" from", err)
}
