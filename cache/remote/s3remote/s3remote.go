// Package s3remote is the shared repository's S3 back end: an OCI
// repository (oras.Target and registry.TagLister from oras-go, the
// storage seam of cache/remote) kept as plain objects in a bucket, for
// s3://BUCKET/PREFIX on Amazon S3 or any S3-compatible server.
//
// A repository NAME below PREFIX is laid out as
//
//	PREFIX/NAME/blobs/sha256/HEX      a blob, content-addressed
//	PREFIX/NAME/manifests/sha256/HEX  a manifest, its media type in the
//	                                  object's metadata
//	PREFIX/NAME/tags/TAG              a tag: the JSON descriptor it points to
//
// Exists is a HEAD (an object of another size counts as absent, so a
// push repairs a truncated one); Fetch checks the bytes against the
// descriptor's digest and size while they stream and fails with
// content.ErrMismatchedDigest at the end of a corrupt or truncated
// object, never passing it as good; Push stores a stream only once it
// has been read whole and verified (a multipart upload is completed only
// then), and skips content already present. A caller that finds a stored
// blob corrupt deletes it (Delete) and pushes the blob again itself
// (oras.Copy skips the whole graph of a manifest that is present).
//
// Access control is the bucket's (IAM or bucket policies per prefix):
// fgimg checks nothing itself. Refused credentials are errors wrapping
// s3client.ErrAuth that name the server.
package s3remote

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"

	"github.com/fgimg/fgimg/internal/s3client"
)

// mediaTypeKey is the metadata key holding a manifest's media type.
const mediaTypeKey = "fgimg-media-type"

// Root is a shared repository s3://BUCKET/PREFIX: the repositories below
// PREFIX.
type Root struct {
	c              *s3client.Client
	bucket, prefix string
}

// Open returns the root s3://bucket/prefix on the S3 the AWS SDK's
// chain configures: credentials and region from the AWS_* variables, the
// shared config files and AWS_PROFILE; an S3-compatible server from
// AWS_ENDPOINT_URL_S3 (or AWS_ENDPOINT_URL). It makes no request.
func Open(ctx context.Context, bucket, prefix string) (*Root, error) {
	c, err := s3client.New(ctx, s3client.Config{})
	if err != nil {
		return nil, err
	}
	return NewRoot(c, bucket, prefix), nil
}

// NewRoot returns the root s3://bucket/prefix reached through c. It makes
// no request.
func NewRoot(c *s3client.Client, bucket, prefix string) *Root {
	return &Root{c: c, bucket: bucket, prefix: strings.Trim(prefix, "/")}
}

// String is s3://BUCKET/PREFIX.
func (r *Root) String() string {
	if r.prefix == "" {
		return "s3://" + r.bucket
	}
	return "s3://" + r.bucket + "/" + r.prefix
}

// nameRE is a repository path as the OCI distribution spec writes one.
var nameRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*)*$`)

// layoutDirs are the directories of a repository's layout: no repository
// name may have one as a component.
var layoutDirs = map[string]bool{"blobs": true, "manifests": true, "tags": true}

// Repository opens the repository name below the root ("" is the root
// itself). It makes no request.
func (r *Root) Repository(name string) (*Repository, error) {
	if name != "" {
		if !nameRE.MatchString(name) {
			return nil, fmt.Errorf("%s: invalid repository name %q: lower case letters, digits and . _ - / only", r, name)
		}
		for _, comp := range strings.Split(name, "/") {
			if layoutDirs[comp] {
				return nil, fmt.Errorf("%s: invalid repository name %q: %q is a directory of the layout", r, name, comp)
			}
		}
	}
	return New(r.c, r.bucket, path.Join(r.prefix, name)), nil
}

// Repositories lists the names of the repositories below the root that
// hold anything, sorted.
func (r *Root) Repositories(ctx context.Context) ([]string, error) {
	var names []string
	var walk func(dir string) error
	walk = func(dir string) error {
		subs, err := r.list(ctx, dir)
		if err != nil {
			return err
		}
		repo := false
		for _, sub := range subs {
			if layoutDirs[path.Base(sub)] {
				repo = true
			} else if err := walk(sub); err != nil {
				return err
			}
		}
		if repo {
			names = append(names, strings.TrimPrefix(strings.TrimPrefix(dir, r.prefix), "/"))
		}
		return nil
	}
	if err := walk(r.prefix); err != nil {
		return nil, err
	}
	sort.Strings(names)
	return names, nil
}

// list returns the "directories" (common prefixes, without the trailing
// slash) right below dir.
func (r *Root) list(ctx context.Context, dir string) ([]string, error) {
	p := dir
	if p != "" {
		p += "/"
	}
	var subs []string
	pg := s3.NewListObjectsV2Paginator(r.c.S3(), &s3.ListObjectsV2Input{Bucket: &r.bucket, Prefix: &p, Delimiter: aws.String("/")})
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			return nil, r.c.Explain(fmt.Sprintf("listing %s", r), err)
		}
		for _, cp := range out.CommonPrefixes {
			subs = append(subs, strings.TrimSuffix(aws.ToString(cp.Prefix), "/"))
		}
	}
	return subs, nil
}

// Repository is one repository: an oras.Target and registry.TagLister
// (and content.Deleter) over S3 objects.
type Repository struct {
	c              *s3client.Client
	bucket, prefix string // prefix: "" or ending in "/"
}

// New returns the repository whose objects live in bucket under prefix.
// It makes no request.
func New(c *s3client.Client, bucket, prefix string) *Repository {
	prefix = strings.Trim(prefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	return &Repository{c: c, bucket: bucket, prefix: prefix}
}

// String is s3://BUCKET/PREFIX of the repository.
func (r *Repository) String() string {
	return "s3://" + r.bucket + "/" + strings.TrimSuffix(r.prefix, "/")
}

// isManifest reports whether a descriptor is stored as a manifest, by
// its media type, as registries tell manifests from blobs.
func isManifest(d ocispec.Descriptor) bool {
	switch d.MediaType {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		"application/vnd.oci.artifact.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.docker.distribution.manifest.list.v2+json":
		return true
	}
	return false
}

func (r *Repository) key(d ocispec.Descriptor) string {
	dir := "blobs/"
	if isManifest(d) {
		dir = "manifests/"
	}
	return r.prefix + dir + d.Digest.Algorithm().String() + "/" + d.Digest.Encoded()
}

func (r *Repository) tagKey(tag string) string { return r.prefix + "tags/" + tag }

// validate refuses a descriptor whose digest could not name an object.
func validate(d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("%s: %w: %v", d.Digest, errdef.ErrInvalidDigest, err)
	}
	if d.Size < 0 {
		return fmt.Errorf("%s: negative size %d", d.Digest, d.Size)
	}
	return nil
}

// Exists reports whether the content is stored with its size.
func (r *Repository) Exists(ctx context.Context, target ocispec.Descriptor) (bool, error) {
	if err := validate(target); err != nil {
		return false, err
	}
	o, found, err := r.c.Stat(ctx, r.bucket, r.key(target))
	if err != nil {
		return false, err
	}
	return found && o.Size == target.Size, nil
}

// Fetch returns the content, verified against target's digest and size
// as it is read: a corrupt or truncated object ends in an error wrapping
// content.ErrMismatchedDigest (and s3client.ErrCorrupt).
func (r *Repository) Fetch(ctx context.Context, target ocispec.Descriptor) (io.ReadCloser, error) {
	if err := validate(target); err != nil {
		return nil, err
	}
	key := r.key(target)
	rc, _, err := r.c.OpenVerified(ctx, r.bucket, key, target.Digest, target.Size)
	if err != nil {
		return nil, r.mapErr(target.Digest.String(), err)
	}
	return &mismatch{rc}, nil
}

// mismatch marks the verifying reader's errors as oras's.
type mismatch struct{ io.ReadCloser }

func (m *mismatch) Read(p []byte) (int, error) {
	n, err := m.ReadCloser.Read(p)
	if err != nil && err != io.EOF && errors.Is(err, s3client.ErrCorrupt) {
		err = fmt.Errorf("%w: %w", content.ErrMismatchedDigest, err)
	}
	return n, err
}

func (r *Repository) mapErr(what string, err error) error {
	switch {
	case errors.Is(err, s3client.ErrCorrupt):
		return fmt.Errorf("%s in %s: %w: %w", what, r, content.ErrMismatchedDigest, err)
	case s3client.NotFound(err):
		return fmt.Errorf("%s in %s: %w: %w", what, r, errdef.ErrNotFound, err)
	}
	return err
}

// Push stores content as expected: only when it has expected's digest
// and size, and not at all when it is already there (content is then
// left unread).
func (r *Repository) Push(ctx context.Context, expected ocispec.Descriptor, rd io.Reader) error {
	if ok, err := r.Exists(ctx, expected); err != nil || ok {
		return err
	}
	var meta map[string]string
	if isManifest(expected) {
		meta = map[string]string{mediaTypeKey: expected.MediaType}
	}
	err := r.c.UploadReader(ctx, r.bucket, r.key(expected), rd, expected.Size, expected.Digest, meta)
	if errors.Is(err, s3client.ErrCorrupt) {
		return fmt.Errorf("%w: %w", content.ErrMismatchedDigest, err)
	}
	return err
}

// Delete removes the content (a missing one is not an error).
func (r *Repository) Delete(ctx context.Context, target ocispec.Descriptor) error {
	if err := validate(target); err != nil {
		return err
	}
	return r.c.Delete(ctx, r.bucket, r.key(target))
}

// tagRE is a tag as the OCI distribution spec allows it.
var tagRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`) })

func (r *Repository) checkTag(tag string) error {
	if !tagRE().MatchString(tag) {
		return fmt.Errorf("%s: %w: tag %q (letters, digits, . _ -, at most 128)", r, errdef.ErrInvalidReference, tag)
	}
	return nil
}

// Resolve returns the descriptor of a tag, or of a manifest by its
// digest.
func (r *Repository) Resolve(ctx context.Context, reference string) (ocispec.Descriptor, error) {
	if d, err := digest.Parse(reference); err == nil {
		o, found, err := r.c.Stat(ctx, r.bucket, r.prefix+"manifests/"+d.Algorithm().String()+"/"+d.Encoded())
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		if !found {
			return ocispec.Descriptor{}, fmt.Errorf("%s in %s: %w", reference, r, errdef.ErrNotFound)
		}
		return ocispec.Descriptor{MediaType: o.Metadata[mediaTypeKey], Digest: d, Size: o.Size}, nil
	}
	if err := r.checkTag(reference); err != nil {
		return ocispec.Descriptor{}, err
	}
	rc, o, err := r.c.Open(ctx, r.bucket, r.tagKey(reference))
	if err != nil {
		return ocispec.Descriptor{}, r.mapErr("tag "+reference, err)
	}
	defer rc.Close()
	if o.Size > 1<<20 {
		return ocispec.Descriptor{}, fmt.Errorf("tag %s in %s: %d bytes, too large for a descriptor", reference, r, o.Size)
	}
	var d ocispec.Descriptor
	if err := json.NewDecoder(rc).Decode(&d); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("tag %s in %s: not a descriptor: %w", reference, r, err)
	}
	if err := validate(d); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("tag %s in %s: %w", reference, r, err)
	}
	return d, nil
}

// Tag points reference at desc, a manifest that must be stored; the tag
// object is replaced whole.
func (r *Repository) Tag(ctx context.Context, desc ocispec.Descriptor, reference string) error {
	if err := r.checkTag(reference); err != nil {
		return err
	}
	ok, err := r.Exists(ctx, desc)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("tagging %s as %s in %s: %w", desc.Digest, reference, r, errdef.ErrNotFound)
	}
	b, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	return r.c.UploadReader(ctx, r.bucket, r.tagKey(reference), bytes.NewReader(b), int64(len(b)), digest.FromBytes(b), nil)
}

// Tags lists the tags in lexical order after last ("" for all), a page
// per call of fn, as the registry API pages them.
func (r *Repository) Tags(ctx context.Context, last string, fn func(tags []string) error) error {
	prefix := r.prefix + "tags/"
	in := &s3.ListObjectsV2Input{Bucket: &r.bucket, Prefix: &prefix, Delimiter: aws.String("/")}
	if last != "" {
		in.StartAfter = aws.String(prefix + last)
	}
	pg := s3.NewListObjectsV2Paginator(r.c.S3(), in)
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			return r.c.Explain("listing the tags of "+r.String(), err)
		}
		tags := make([]string, 0, len(out.Contents))
		for _, o := range out.Contents {
			tags = append(tags, strings.TrimPrefix(aws.ToString(o.Key), prefix))
		}
		sort.Strings(tags)
		if len(tags) == 0 {
			continue
		}
		if err := fn(tags); err != nil {
			return err
		}
	}
	return nil
}
