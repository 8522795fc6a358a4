package s3client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"
)

// ErrCorrupt marks an object whose bytes are not those its digest or
// size says: a corrupt or truncated object on the server, or a stream
// that is not what its uploader claimed.
var ErrCorrupt = errors.New("content does not match its digest")

// OpenVerified returns the object's body checked while it streams: the
// reader fails with ErrCorrupt, instead of returning io.EOF, when the
// bytes read do not have the digest want or are not size bytes long
// (size < 0: any size). An object whose length already differs is
// refused before any byte is read. A connection lost mid-stream is
// picked up where it broke (a ranged GET of the same ETag), up to
// three times. The caller closes the reader and must read it to io.EOF
// to know the content good.
func (c *Client) OpenVerified(ctx context.Context, bucket, key string, want digest.Digest, size int64) (io.ReadCloser, Object, error) {
	if err := want.Validate(); err != nil {
		return nil, Object{}, fmt.Errorf("s3: %s/%s: %w", bucket, key, err)
	}
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, Object{}, fmt.Errorf("s3: %s/%s on %s: %w", bucket, key, c, explain(err))
	}
	o := Object{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: strings.Trim(aws.ToString(out.ETag), `"`),
		Metadata: lower(out.Metadata)}
	if size >= 0 && out.ContentLength != nil && o.Size != size {
		out.Body.Close()
		return nil, o, fmt.Errorf("s3: %s/%s on %s: %w: %d bytes, want %d", bucket, key, c, ErrCorrupt, o.Size, size)
	}
	r := &resuming{c: c, ctx: ctx, bucket: bucket, key: key, etag: aws.ToString(out.ETag), body: out.Body}
	v := newVerifier(r, want, size)
	v.name = fmt.Sprintf("%s/%s on %s", bucket, key, c)
	return struct {
		io.Reader
		io.Closer
	}{v, r}, o, nil
}

// resuming is an object's body that, when the connection breaks, asks
// for the rest of the same object (Range from where it broke, If-Match
// its ETag) and goes on.
type resuming struct {
	c           *Client
	ctx         context.Context
	bucket, key string
	etag        string
	body        io.ReadCloser
	off         int64
	resumed     int
}

func (r *resuming) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	r.off += int64(n)
	if err == nil || err == io.EOF || r.ctx.Err() != nil || r.resumed == 3 || r.etag == "" {
		return n, err
	}
	r.resumed++
	r.body.Close()
	rng := fmt.Sprintf("bytes=%d-", r.off)
	out, gerr := r.c.s3.GetObject(r.ctx, &s3.GetObjectInput{Bucket: &r.bucket, Key: &r.key, Range: &rng, IfMatch: &r.etag})
	if gerr != nil {
		r.body = io.NopCloser(errReader{err})
		return n, fmt.Errorf("%w (resuming at byte %d: %v)", err, r.off, explain(gerr))
	}
	r.body = out.Body
	return n, nil
}

func (r *resuming) Close() error { return r.body.Close() }

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// verifier passes a stream through, checking its length and digest at
// the end (and failing as soon as it runs longer than size).
type verifier struct {
	r    io.Reader
	d    digest.Verifier
	want digest.Digest
	size int64 // < 0: unknown
	n    int64
	name string
	err  error
}

func newVerifier(r io.Reader, want digest.Digest, size int64) *verifier {
	return &verifier{r: r, d: want.Verifier(), want: want, size: size}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.size >= 0 && int64(len(p)) > v.size-v.n+1 {
		p = p[:v.size-v.n+1] // one byte more tells a long stream
	}
	n, err := v.r.Read(p)
	v.d.Write(p[:n])
	v.n += int64(n)
	if v.size >= 0 && v.n > v.size {
		v.err = v.corrupt("longer than %d bytes", v.size)
		return n, v.err
	}
	if err == io.EOF {
		if err := v.check(); err != nil {
			v.err = err
			return n, err
		}
	} else if err == io.ErrUnexpectedEOF {
		err = v.corrupt("truncated after %d bytes: %v", v.n, err)
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

func (v *verifier) check() error {
	if v.size >= 0 && v.n != v.size {
		return v.corrupt("%d bytes, want %d", v.n, v.size)
	}
	if !v.d.Verified() {
		return v.corrupt("digest is not %s", v.want)
	}
	return nil
}

// finish checks a stream read to exactly its size: it must end there
// and have the digest.
func (v *verifier) finish() error {
	var one [1]byte
	if n, _ := io.ReadFull(v.r, one[:]); n > 0 {
		return v.corrupt("longer than %d bytes", v.size)
	}
	return v.check()
}

func (v *verifier) corrupt(format string, args ...any) error {
	err := fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	if v.name != "" {
		err = fmt.Errorf("s3: %s: %w", v.name, err)
	}
	return err
}
