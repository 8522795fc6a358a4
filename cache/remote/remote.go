package remote

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/fgimg/fgimg/cache"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2/errdef"
)

// ErrCorrupt marks a blob whose bytes did not match its digest or size
// however often it was fetched: it was not stored.
var ErrCorrupt = errors.New("corrupt in the shared repository")

// Remote is a shared repository as fgimg uses it: objects (stage
// results, target writes) by Key, pushed from and pulled into a local
// cache.Store. It is safe for concurrent use.
type Remote struct {
	root Root
	// ReadOnly: Push and the other writes fail; lookups and pulls work.
	ReadOnly bool
	// Jobs bounds concurrent requests of one call (default 8).
	Jobs int

	mu    sync.Mutex
	repos map[string]Backend
}

// New returns the shared repository at root.
func New(root Root) *Remote { return &Remote{root: root, repos: map[string]Backend{}} }

// Open parses REF and opens its shared repository.
func Open(ref string, opts Options) (*Remote, error) {
	r, err := ParseRef(ref)
	if err != nil {
		return nil, err
	}
	root, err := OpenRoot(r, opts)
	if err != nil {
		return nil, err
	}
	return New(root), nil
}

func (r *Remote) String() string { return r.root.String() }

func (r *Remote) jobs() int {
	if r.Jobs > 0 {
		return r.Jobs
	}
	return 8
}

// Repo returns the back end of namespace ns.
func (r *Remote) Repo(ns string) (Backend, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.repos[ns]; ok {
		return b, nil
	}
	b, err := r.root.Repository(ns)
	if err != nil {
		return nil, err
	}
	r.repos[ns] = b
	return b, nil
}

// wrap names the shared repository and explains refusals.
func (r *Remote) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	host := r.root.String()
	if i := strings.IndexByte(host, '/'); i > 0 {
		host = host[:i]
	}
	return fmt.Errorf("%s %s: %w", what, r.root, explain(host, err))
}

// Lookup asks about many objects at once, concurrently, one small
// request each (a HEAD of its tag), and returns the manifest
// descriptors of those the shared repository holds; Get reads one in
// full. Objects it could not ask about are left out and reported in the
// error, so a caller may use the rest.
func (r *Remote) Lookup(ctx context.Context, keys []Key) (map[Key]ocispec.Descriptor, error) {
	found := map[Key]ocispec.Descriptor{}
	var mu sync.Mutex
	var errs []error
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4 * r.jobs())
	for _, k := range keys {
		g.Go(func() error {
			desc, err := r.resolve(gctx, k)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				found[k] = desc
			case errors.Is(err, errdef.ErrNotFound):
			default:
				errs = append(errs, err)
			}
			return nil
		})
	}
	g.Wait()
	if len(errs) > 0 {
		return found, errs[0] // one is enough: the rest say the same
	}
	return found, nil
}

func (r *Remote) resolve(ctx context.Context, k Key) (ocispec.Descriptor, error) {
	b, err := r.Repo(k.Namespace)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	desc, err := b.Resolve(ctx, k.Kind.tag(k.Digest))
	if errors.Is(err, errdef.ErrNotFound) {
		return desc, err
	}
	return desc, r.wrap("looking up "+k.String()+" in", err)
}

// Get reads one object; a missing one gives an error matching
// errdef.ErrNotFound.
func (r *Remote) Get(ctx context.Context, k Key) (*Object, error) {
	b, err := r.Repo(k.Namespace)
	if err != nil {
		return nil, err
	}
	o, err := fetchObject(ctx, b, k)
	if errors.Is(err, errdef.ErrNotFound) {
		return nil, err
	}
	return o, r.wrap("reading "+k.String()+" from", err)
}

// Push stores the record of k.Digest in the local store, and the blobs
// it names, as object k with the given manifest annotations. Blobs the
// shared repository has are not sent again.
func (r *Remote) Push(ctx context.Context, store *cache.Store, k Key, annotations map[string]string) (ocispec.Descriptor, error) {
	if r.ReadOnly {
		return ocispec.Descriptor{}, fmt.Errorf("shared repository %s is read-only", r.root)
	}
	desc, err := r.push(ctx, store, k, annotations)
	return desc, r.wrap("pushing "+k.String()+" to", err)
}

func (r *Remote) push(ctx context.Context, store *cache.Store, k Key, annotations map[string]string) (ocispec.Descriptor, error) {
	b, err := r.Repo(k.Namespace)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	rec, err := store.Record(k.Digest)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	layers := make([]ocispec.Descriptor, len(rec.Outputs))
	for i, o := range rec.Outputs {
		mt := o.MediaType
		if mt == "" || isManifestType(mt) {
			// A registry would take a blob with a manifest's media type
			// (an OCI target's own manifests) for a manifest; the
			// record keeps the real media type.
			mt = MediaTypeBlob
		}
		layers[i] = ocispec.Descriptor{MediaType: mt, Digest: o.Digest, Size: o.Size,
			Annotations: map[string]string{ocispec.AnnotationTitle: o.Name}}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.jobs())
	for _, l := range layers {
		g.Go(func() error { return pushBlob(gctx, b, store, l) })
	}
	if err := g.Wait(); err != nil {
		return ocispec.Descriptor{}, err
	}
	rb, err := encodeRecord(rec)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	cfg := ocispec.Descriptor{MediaType: MediaTypeRecord, Digest: digest.FromBytes(rb), Size: int64(len(rb))}
	if err := pushBytes(ctx, b, cfg, rb); err != nil {
		return ocispec.Descriptor{}, err
	}
	ann := map[string]string{ocispec.AnnotationCreated: created(rec)}
	for key, v := range annotations {
		ann[key] = v
	}
	return pushManifest(ctx, b, ocispec.Manifest{ArtifactType: k.Kind.artifactType(), Config: cfg, Layers: layers, Annotations: ann}, k.Kind.tag(k.Digest))
}

// isManifestType says whether a registry treats mediaType as a manifest.
func isManifestType(mediaType string) bool {
	switch mediaType {
	case ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
		"application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.docker.distribution.manifest.list.v2+json":
		return true
	}
	return false
}

func pushBlob(ctx context.Context, b Backend, store *cache.Store, l ocispec.Descriptor) error {
	if ok, err := b.Exists(ctx, l); err == nil && ok {
		return nil
	}
	f, err := store.OpenBlob(l.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := b.Push(ctx, l, f); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return fmt.Errorf("blob %s: %w", l.Digest, err)
	}
	return nil
}

// Pull fetches the blobs of o that the local store lacks, concurrently,
// each verified against its digest while it streams, and then writes
// o's record, so the store has the stage or write as if built here. A
// blob whose bytes do not match is fetched again and, if still wrong,
// the pull fails with ErrCorrupt; nothing unverified is stored.
func (r *Remote) Pull(ctx context.Context, store *cache.Store, o *Object) (int64, error) {
	n, err := r.pull(ctx, store, o)
	return n, r.wrap("pulling "+o.Key.String()+" from", err)
}

func (r *Remote) pull(ctx context.Context, store *cache.Store, o *Object) (int64, error) {
	b, err := r.Repo(o.Key.Namespace)
	if err != nil {
		return 0, err
	}
	var total int64
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.jobs())
	for _, l := range o.Manifest.Layers {
		if store.HasBlob(l.Digest) {
			continue
		}
		g.Go(func() error {
			if err := FetchBlob(gctx, b, store, l); err != nil {
				return err
			}
			mu.Lock()
			total += l.Size
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return total, err
	}
	rec := o.Record
	rec.Log = ""
	return total, store.PutRecord(rec)
}

// FetchBlob copies blob desc from b into the store, verifying its size
// and digest as it streams. A connection that breaks is resumed from
// where it stopped when the back end can seek (HTTP range requests);
// a blob that arrives corrupt is fetched again once more.
func FetchBlob(ctx context.Context, b Backend, store *cache.Store, desc ocispec.Descriptor) error {
	var err error
	for range 2 {
		err = fetchOnce(ctx, b, store, desc)
		if err == nil || !errors.Is(err, ErrCorrupt) || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func fetchOnce(ctx context.Context, b Backend, store *cache.Store, desc ocispec.Descriptor) error {
	if err := desc.Digest.Validate(); err != nil {
		return err
	}
	rc, err := b.Fetch(ctx, desc)
	if err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	defer func() { rc.Close() }()
	w, err := store.NewBlob()
	if err != nil {
		return err
	}
	defer w.Close()
	h := desc.Digest.Algorithm().Hash()
	if err := copyVerified(w, h, rc, desc); err != nil {
		return fmt.Errorf("blob %s: %w", desc.Digest, err)
	}
	if got := digest.NewDigest(desc.Digest.Algorithm(), h); got != desc.Digest {
		return fmt.Errorf("blob %s: %w: its bytes hash to %s", desc.Digest, ErrCorrupt, got)
	}
	d, err := w.Commit()
	if err != nil {
		return err
	}
	if d.Digest != desc.Digest { // the store hashes too; never differs
		return fmt.Errorf("blob %s: stored as %s", desc.Digest, d.Digest)
	}
	return nil
}

// copyVerified copies desc.Size bytes from rc into w and h, resuming
// after a broken read by seeking when rc can, and fails with ErrCorrupt
// on a blob longer or shorter than desc.Size.
func copyVerified(w *cache.BlobWriter, h hash.Hash, rc io.ReadCloser, desc ocispec.Descriptor) error {
	buf := make([]byte, 1<<20)
	resumes := 0
	for {
		n, err := rc.Read(buf)
		if n > 0 {
			if w.Size()+int64(n) > desc.Size {
				return fmt.Errorf("%w: more than %d bytes", ErrCorrupt, desc.Size)
			}
			h.Write(buf[:n])
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			s, ok := rc.(io.Seeker)
			if !ok || resumes >= 5 || errors.Is(err, os.ErrDeadlineExceeded) {
				return err
			}
			if _, serr := s.Seek(w.Size(), io.SeekStart); serr != nil {
				return err
			}
			resumes++
		}
	}
	if w.Size() != desc.Size {
		return fmt.Errorf("%w: %d of %d bytes", ErrCorrupt, w.Size(), desc.Size)
	}
	return nil
}
