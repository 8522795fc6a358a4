package s3client

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	"github.com/opencontainers/go-digest"
)

// Upload's design. It is fgimg's own multipart code over the SDK's
// low-level calls rather than feature/s3/transfermanager (the deprecated
// manager's successor, still v0.x): neither can pick up a multipart
// upload another process began, and resuming is the point here. An
// unfinished upload is found on the server (ListMultipartUploads,
// ListParts), so a resume needs no local state and works from another
// machine holding the same file.
//
// The object appears under its key only when CompleteMultipartUpload (or
// the single PutObject of a small file) succeeds: S3 never shows a
// partial object. An interrupted upload is left on the server for the
// next Upload to finish; a bucket lifecycle rule
// (AbortIncompleteMultipartUpload) reclaims those nobody resumes.

// DigestKey is the user-metadata key (x-amz-meta-fgimg-digest) under
// which callers pass an upload's fgimg digest: Upload skips a file whose
// object already carries the same digest and size.
const DigestKey = "fgimg-digest"

const (
	// DefaultPartSize is the part size of multipart uploads: large
	// enough for throughput, small enough that a resume re-sends little.
	DefaultPartSize = 16 << 20
	// DefaultConcurrency is how many parts are in flight at once.
	DefaultConcurrency = 4
	// minPartSize is S3's smallest part but the last.
	minPartSize = 5 << 20
	maxParts    = 10000
	// maxCopySize is the largest object CopyObject copies.
	maxCopySize = 5 << 30
)

// UploadResult says what an upload did.
type UploadResult struct {
	// Skipped: the object was already there with the same digest.
	Skipped bool
	// Parts is the number of parts of a multipart upload (0 for a
	// single PutObject); Resumed of them were already on the server,
	// verified against the file, and Sent were sent now.
	Parts, Resumed, Sent int
	// Bytes is the number of bytes sent now.
	Bytes int64
}

// Upload stores the file at path as bucket/key with the given user
// metadata; large files go up in parallel parts, resuming an upload of
// the same key left unfinished. When meta holds DigestKey and the object
// is there with that digest and the file's size, nothing is sent.
// progress, if not nil, is called with the bytes done so far.
func (c *Client) Upload(ctx context.Context, bucket, key, path string, meta map[string]string, progress func(sent int64)) error {
	_, err := c.UploadFile(ctx, bucket, key, path, meta, progress)
	return err
}

// UploadFile is Upload reporting what it did.
func (c *Client) UploadFile(ctx context.Context, bucket, key, path string, meta map[string]string, progress func(sent int64)) (UploadResult, error) {
	res, err := c.uploadFile(ctx, bucket, key, path, meta, progress)
	if err != nil {
		return res, fmt.Errorf("s3: uploading %s to %s/%s on %s: %w", path, bucket, key, c, explain(err))
	}
	return res, nil
}

func (c *Client) uploadFile(ctx context.Context, bucket, key, path string, meta map[string]string, progress func(int64)) (UploadResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return UploadResult{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return UploadResult{}, err
	}
	size := st.Size()
	p := newProgress(progress)
	if d := meta[DigestKey]; d != "" {
		o, found, err := c.stat(ctx, bucket, key)
		if err != nil {
			return UploadResult{}, err
		}
		if found && o.Size == size && o.Metadata[DigestKey] == d {
			p.add(size)
			return UploadResult{Skipped: true}, nil
		}
	}
	partSize := c.partSize(size)
	if size <= partSize {
		sum, err := hashRange(f, 0, size)
		if err != nil {
			return UploadResult{}, err
		}
		if err := c.put(ctx, bucket, key, io.NewSectionReader(f, 0, size), sum, meta); err != nil {
			return UploadResult{}, err
		}
		p.add(size)
		return UploadResult{Bytes: size}, nil
	}

	n := int((size + partSize - 1) / partSize)
	var next atomic.Int64
	src := func() (part, error) {
		i := int(next.Add(1) - 1)
		off, l := int64(i)*partSize, min(partSize, size-int64(i)*partSize)
		sum, err := hashRange(f, off, l)
		return part{i: i, body: io.NewSectionReader(f, off, l), sum: sum}, err
	}
	// Whatever fails, the upload stays for the next Upload to resume.
	res, _, err := c.multipart(ctx, bucket, key, size, n, meta, src, p)
	return res, err
}

// part is one part read from a source, with its sums; release, if set,
// is called when it is sent.
type part struct {
	i       int
	body    io.ReadSeeker
	sum     partSum
	release func()
}

// multipart sends a multipart upload of n parts, each got from next
// (called once per part, from several goroutines), resuming the
// unfinished upload of key if there is one. A part already on the server
// is kept only when its ETag is the MD5 of the same part of what is
// uploaded now, and sent again otherwise; the object appears when all
// are there. id is the upload's, for the caller to abort.
func (c *Client) multipart(ctx context.Context, bucket, key string, size int64, n int, meta map[string]string, next func() (part, error), p *progress) (res UploadResult, id string, err error) {
	res.Parts = n
	id, have, err := c.findUpload(ctx, bucket, key)
	if err != nil {
		return res, "", err
	}
	resumed := id != ""
	if !resumed {
		out, err := c.s3.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &bucket, Key: &key, Metadata: meta})
		if err != nil {
			return res, "", err
		}
		id = aws.ToString(out.UploadId)
	}
	parts := make([]types.CompletedPart, n)
	md5s := make([][]byte, n)
	var mu sync.Mutex
	err = c.parallel(ctx, n, func(int) error {
		pt, err := next()
		if pt.release != nil {
			defer pt.release()
		}
		if err != nil {
			return err
		}
		num := int32(pt.i + 1)
		etag := (*string)(nil)
		old, ok := have[num]
		kept := ok && aws.ToInt64(old.Size) == pt.sum.size && strings.Trim(aws.ToString(old.ETag), `"`) == hex.EncodeToString(pt.sum.md5)
		if kept {
			etag = old.ETag
		} else if etag, err = c.uploadPart(ctx, bucket, key, id, num, pt.body, pt.sum); err != nil {
			return err
		}
		mu.Lock()
		parts[pt.i] = types.CompletedPart{PartNumber: &num, ETag: etag}
		md5s[pt.i] = pt.sum.md5
		if kept {
			res.Resumed++
		} else {
			res.Sent++
			res.Bytes += pt.sum.size
		}
		mu.Unlock()
		p.add(pt.sum.size)
		return nil
	})
	if err != nil {
		return res, id, err
	}
	if err := c.complete(ctx, bucket, key, id, parts, md5s); err != nil {
		return res, id, err
	}
	if resumed {
		// The resumed upload was created with the metadata of its time,
		// which ListMultipartUploads does not show.
		if err := c.fixMetadata(ctx, bucket, key, size, meta); err != nil {
			return res, "", err
		}
	}
	return res, "", nil
}

// UploadReader stores exactly size bytes read from r as bucket/key, and
// only if they have the digest want: the object appears only after the
// whole stream was read and verified (a multipart upload is aborted,
// never completed, otherwise). It reads ahead in parts and sends them in
// parallel. An upload of the key left unfinished (by a failed network or
// a killed process) is resumed: the stream is read again, but the parts
// the server holds with the same MD5 are not sent again.
func (c *Client) UploadReader(ctx context.Context, bucket, key string, r io.Reader, size int64, want digest.Digest, meta map[string]string) error {
	if _, err := c.uploadReader(ctx, bucket, key, r, size, want, meta); err != nil {
		return fmt.Errorf("s3: uploading %s to %s/%s on %s: %w", want, bucket, key, c, explain(err))
	}
	return nil
}

func (c *Client) uploadReader(ctx context.Context, bucket, key string, r io.Reader, size int64, want digest.Digest, meta map[string]string) (UploadResult, error) {
	if err := want.Validate(); err != nil {
		return UploadResult{}, err
	}
	vr := newVerifier(r, want, size)
	partSize := c.partSize(size)
	if size <= partSize {
		buf, err := io.ReadAll(vr)
		if err != nil {
			return UploadResult{}, err
		}
		return UploadResult{Bytes: size}, c.put(ctx, bucket, key, bytes.NewReader(buf), hashBytes(buf), meta)
	}
	n := int((size + partSize - 1) / partSize)
	// Buffers cycle through the workers: at most concurrency+1 parts
	// are in memory. Parts come off the stream in order.
	free := make(chan []byte, c.concurrency()+1)
	for range cap(free) {
		free <- make([]byte, partSize)
	}
	var mu sync.Mutex
	var readErr error
	i := 0
	src := func() (part, error) {
		buf := <-free
		release := func() { free <- buf }
		mu.Lock()
		defer mu.Unlock()
		pt := part{i: i, release: release}
		if readErr != nil {
			return pt, readErr
		}
		l := min(partSize, size-int64(i)*partSize)
		_, err := io.ReadFull(vr, buf[:l])
		if err == nil && i == n-1 {
			err = vr.finish()
		}
		if err != nil {
			readErr = err
			return pt, err
		}
		i++
		pt.body, pt.sum = bytes.NewReader(buf[:l]), hashBytes(buf[:l])
		return pt, nil
	}
	res, id, err := c.multipart(ctx, bucket, key, size, n, meta, src, newProgress(nil))
	if err != nil && id != "" && errors.Is(readErr, ErrCorrupt) {
		// Not the content of this key: nothing worth resuming.
		c.s3.AbortMultipartUpload(context.WithoutCancel(ctx), &s3.AbortMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: &id})
	}
	if readErr != nil {
		return res, readErr
	}
	return res, err
}

// partSize is the configured part size, grown for files that would
// otherwise need more than S3's 10,000 parts.
func (c *Client) partSize(size int64) int64 {
	ps := int64(c.cfg.PartSize)
	if ps == 0 {
		ps = DefaultPartSize
	}
	ps = max(ps, minPartSize)
	if need := (size + maxParts - 1) / maxParts; need > ps {
		ps = (need + 1<<20 - 1) &^ (1<<20 - 1)
	}
	return ps
}

func (c *Client) concurrency() int {
	if c.cfg.Concurrency > 0 {
		return c.cfg.Concurrency
	}
	return DefaultConcurrency
}

// parallel runs do(0..n-1) on up to concurrency goroutines. The first
// error stops new calls and is returned once the calls under way end:
// they run on under the caller's context, so that a part being sent
// either arrives or fails before the caller goes on (an upload aborted
// meanwhile would get it back otherwise).
func (c *Client) parallel(ctx context.Context, n int, do func(i int) error) error {
	stop, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(n, c.concurrency()) {
		wg.Go(func() {
			for i := range jobs {
				if err := do(i); err != nil {
					cancel(err)
				}
			}
		})
	}
	for i := range n {
		select {
		case jobs <- i:
			continue
		case <-stop.Done():
		}
		break
	}
	close(jobs)
	wg.Wait()
	if stop.Err() != nil {
		return context.Cause(stop)
	}
	return nil
}

// findUpload finds the newest unfinished multipart upload of key and the
// parts it holds; id is "" when there is none.
func (c *Client) findUpload(ctx context.Context, bucket, key string) (id string, parts map[int32]types.Part, err error) {
	var newest *types.MultipartUpload
	pg := s3.NewListMultipartUploadsPaginator(c.s3, &s3.ListMultipartUploadsInput{Bucket: &bucket, Prefix: &key})
	for pg.HasMorePages() {
		out, err := pg.NextPage(ctx)
		if err != nil {
			return "", nil, err
		}
		for _, u := range out.Uploads {
			if aws.ToString(u.Key) != key {
				continue
			}
			if newest == nil || aws.ToTime(u.Initiated).After(aws.ToTime(newest.Initiated)) {
				newest = &u
			}
		}
	}
	if newest == nil {
		return "", nil, nil
	}
	id = aws.ToString(newest.UploadId)
	parts = map[int32]types.Part{}
	lp := s3.NewListPartsPaginator(c.s3, &s3.ListPartsInput{Bucket: &bucket, Key: &key, UploadId: &id})
	for lp.HasMorePages() {
		out, err := lp.NextPage(ctx)
		if err != nil {
			if NotFound(err) { // finished or aborted meanwhile
				return "", nil, nil
			}
			return "", nil, err
		}
		for _, p := range out.Parts {
			parts[aws.ToInt32(p.PartNumber)] = p
		}
	}
	return id, parts, nil
}

// complete finishes a multipart upload and checks the object's ETag,
// where the server gives the usual MD5 of the parts' MD5s, against the
// MD5s of what was meant to be sent.
func (c *Client) complete(ctx context.Context, bucket, key, id string, parts []types.CompletedPart, md5s [][]byte) error {
	h := md5.New()
	for _, m := range md5s {
		h.Write(m)
	}
	want := hex.EncodeToString(h.Sum(nil)) + "-" + strconv.Itoa(len(parts))
	out, err := c.s3.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: &bucket, Key: &key, UploadId: &id,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
	if err != nil {
		var ae smithy.APIError
		if errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload" {
			// Another process resumed the same upload and completed it
			// first: fine if it made the same object.
			if o, found, serr := c.stat(ctx, bucket, key); serr == nil && found && o.ETag == want {
				return nil
			}
		}
		return err
	}
	got := strings.Trim(aws.ToString(out.ETag), `"`)
	if strings.Contains(got, "-") && got != want {
		return fmt.Errorf("the completed object's ETag is %s, not %s as its parts make it: the object differs from the file", got, want)
	}
	return nil
}

// fixMetadata gives a completed object the metadata meta when it has
// other: in place by CopyObject up to 5 GiB (the largest it copies).
func (c *Client) fixMetadata(ctx context.Context, bucket, key string, size int64, meta map[string]string) error {
	o, _, err := c.stat(ctx, bucket, key)
	if err != nil {
		return err
	}
	if maps.Equal(o.Metadata, lower(meta)) {
		return nil
	}
	if size > maxCopySize {
		return fmt.Errorf("the resumed upload was begun with other metadata (%v, not %v) and the object is too large to copy in place: delete it and upload again", o.Metadata, meta)
	}
	src := bucket + "/" + escapeKey(key)
	_, err = c.s3.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &bucket, Key: &key, CopySource: &src,
		Metadata: meta, MetadataDirective: types.MetadataDirectiveReplace})
	return err
}

func escapeKey(key string) string {
	var b strings.Builder
	for _, seg := range strings.Split(key, "/") {
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(strings.ReplaceAll(url.PathEscape(seg), "+", "%2B"))
	}
	return b.String()
}

// put stores a whole object with its metadata, and uploadPart one part
// of upload id: Content-MD5 has the server check what arrived, and the
// precomputed SHA-256 signs the payload without the SDK reading it again.
func (c *Client) put(ctx context.Context, bucket, key string, body io.ReadSeeker, sum partSum, meta map[string]string) error {
	_, err := c.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: body,
		ContentLength: aws.Int64(sum.size), ContentMD5: sum.contentMD5(), Metadata: meta}, sum.signed())
	return err
}

func (c *Client) uploadPart(ctx context.Context, bucket, key, id string, num int32, body io.ReadSeeker, sum partSum) (*string, error) {
	out, err := c.s3.UploadPart(ctx, &s3.UploadPartInput{Bucket: &bucket, Key: &key, UploadId: &id, PartNumber: &num,
		Body: body, ContentLength: aws.Int64(sum.size), ContentMD5: sum.contentMD5()}, sum.signed())
	if err != nil {
		return nil, fmt.Errorf("part %d: %w", num, err)
	}
	return out.ETag, nil
}

func (s partSum) contentMD5() *string { return aws.String(base64.StdEncoding.EncodeToString(s.md5)) }

func (s partSum) signed() func(*s3.Options) { return withPayloadHash(hex.EncodeToString(s.sha256)) }

// withPayloadHash signs a request with a SHA-256 computed beforehand,
// where the SDK would read the body once more to compute it.
func withPayloadHash(h string) func(*s3.Options) {
	return func(o *s3.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			if _, ok := st.Finalize.Get("ComputePayloadHash"); !ok {
				return nil // a stack that does not hash the payload
			}
			return st.Finalize.Insert(middleware.FinalizeMiddlewareFunc("fgimgPayloadHash",
				func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
					return next.HandleFinalize(v4.SetPayloadHash(ctx, h), in)
				}), "ComputePayloadHash", middleware.Before)
		})
	}
}

type partSum struct {
	size        int64
	md5, sha256 []byte
}

func hashRange(f io.ReaderAt, off, l int64) (partSum, error) {
	m, s := md5.New(), sha256.New()
	n, err := io.Copy(io.MultiWriter(m, s), io.NewSectionReader(f, off, l))
	if err == nil && n != l {
		err = fmt.Errorf("the file is shorter than when the upload began")
	}
	return partSum{size: l, md5: m.Sum(nil), sha256: s.Sum(nil)}, err
}

func hashBytes(b []byte) partSum {
	m := md5.Sum(b)
	s := sha256.Sum256(b)
	return partSum{size: int64(len(b)), md5: m[:], sha256: s[:]}
}

// progress adds up bytes done by parallel parts for one callback.
type progress struct {
	mu   sync.Mutex
	done int64
	f    func(int64)
}

func newProgress(f func(int64)) *progress { return &progress{f: f} }

func (p *progress) add(n int64) {
	if p.f == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.done += n
	p.f(p.done)
}
