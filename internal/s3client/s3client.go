// Package s3client is fgimg's one S3 client: it connects to Amazon S3 or
// an S3-compatible server (Walrus, Cumulus, versitygw, MinIO, Ceph RGW)
// with credentials from the AWS SDK's standard chain, and does the few
// object operations fgimg needs: Stat, Upload (parallel, resumable
// multipart for large files, skipped when the object carries the same
// digest), UploadReader (a stream stored only once verified), Open,
// OpenVerified (checked against a digest while streaming) and Delete. The shared repository's S3 back end and the
// EC2, Eucalyptus and Nimbus registrations all use it.
package s3client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// Config says which S3 to reach. The zero Config is Amazon S3 with the
// region and credentials of the SDK's chain (AWS_* variables, the shared
// config and credentials files, AWS_PROFILE, instance roles).
type Config struct {
	// Endpoint is an S3-compatible server's URL (http://host:port); ""
	// is AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL if set, else Amazon S3. A set Endpoint uses path-style addressing, which
	// every S3-compatible server understands.
	Endpoint string
	// Region overrides the chain's region; S3-compatible servers that
	// ignore regions still need one to sign with (us-east-1 by default).
	Region string
	// Profile selects a profile of the shared config files.
	Profile string
	// AccessKey and SecretKey, when set, replace the chain (tests, and
	// servers such as Cumulus whose keys come from their own files).
	AccessKey, SecretKey string
	// PartSize and Concurrency tune multipart uploads: the part size
	// (DefaultPartSize if 0, at least 5 MiB) and the parts in flight
	// (DefaultConcurrency if 0).
	PartSize    int64
	Concurrency int
	// HTTPClient, if set, carries the requests (a proxy, or a test
	// counting them).
	HTTPClient *http.Client
}

// Client is a connected S3 client.
type Client struct {
	s3  *s3.Client
	cfg Config
}

// New loads the credential chain and returns a client. It does not
// contact the server.
func New(ctx context.Context, c Config) (*Client, error) {
	if c.Endpoint == "" {
		// The SDK reads these too; taken here, the endpoint gets
		// path-style addressing and names the server in messages.
		c.Endpoint = cmp.Or(os.Getenv("AWS_ENDPOINT_URL_S3"), os.Getenv("AWS_ENDPOINT_URL"))
	}
	var opts []func(*config.LoadOptions) error
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	}
	if c.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(c.Profile))
	}
	if c.AccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(c.AccessKey, c.SecretKey, "")))
	}
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3: loading the AWS configuration: %w", err)
	}
	if ac.Region == "" {
		if c.Endpoint == "" {
			return nil, errors.New("s3: no region: set AWS_REGION, a region in ~/.aws/config, or the target's region")
		}
		ac.Region = "us-east-1"
	}
	cl := s3.NewFromConfig(ac, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
			o.UsePathStyle = true
		}
		// S3-compatible servers differ in which of the newer integrity
		// checksums they accept; send and check them only when required.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		if c.HTTPClient != nil {
			o.HTTPClient = c.HTTPClient
		}
	})
	return &Client{s3: cl, cfg: c}, nil
}

// S3 is the SDK client, for operations this package does not wrap.
func (c *Client) S3() *s3.Client { return c.s3 }

// String names the server, for messages: the endpoint or "Amazon S3".
func (c *Client) String() string {
	if c.cfg.Endpoint != "" {
		return c.cfg.Endpoint
	}
	return "Amazon S3"
}

// Object is what Stat and Open report of an object.
type Object struct {
	Key  string
	Size int64
	// ETag is the server's, unquoted: the MD5 of a simple upload's
	// bytes, or MD5-of-part-MD5s-N of a multipart one.
	ETag string
	// Metadata holds the user metadata (x-amz-meta-*), keys in lower case.
	Metadata map[string]string
}

// Stat reports an object; found is false when there is none.
func (c *Client) Stat(ctx context.Context, bucket, key string) (o Object, found bool, err error) {
	o, found, err = c.stat(ctx, bucket, key)
	if err != nil {
		return Object{}, false, fmt.Errorf("s3: %s/%s on %s: %w", bucket, key, c, explain(err))
	}
	return o, found, nil
}

func (c *Client) stat(ctx context.Context, bucket, key string) (o Object, found bool, err error) {
	out, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		if NotFound(err) {
			return Object{}, false, nil
		}
		return Object{}, false, err
	}
	return Object{Key: key, Size: aws.ToInt64(out.ContentLength), ETag: strings.Trim(aws.ToString(out.ETag), `"`),
		Metadata: lower(out.Metadata)}, true, nil
}

// Open returns the object's body; the caller closes it.
func (c *Client) Open(ctx context.Context, bucket, key string) (io.ReadCloser, Object, error) {
	out, err := c.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		return nil, Object{}, fmt.Errorf("s3: %s/%s on %s: %w", bucket, key, c, explain(err))
	}
	return out.Body, Object{Key: key, Size: aws.ToInt64(out.ContentLength), Metadata: lower(out.Metadata)}, nil
}

// Delete removes an object; a missing one is not an error.
func (c *Client) Delete(ctx context.Context, bucket, key string) error {
	_, err := c.s3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &bucket, Key: &key})
	if err != nil && !NotFound(err) {
		return fmt.Errorf("s3: deleting %s/%s on %s: %w", bucket, key, c, explain(err))
	}
	return nil
}

// NotFound reports whether err says the object or bucket does not exist.
func NotFound(err error) bool {
	var nk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nk) || errors.As(err, &nf) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchBucket":
			return true
		}
	}
	return false
}

// Explain wraps an error of an operation done with S3() directly as this
// package's own: naming the server and marking refused credentials.
func (c *Client) Explain(what string, err error) error {
	return fmt.Errorf("s3: %s on %s: %w", what, c, explain(err))
}

// ErrAuth marks the server refusing the credentials or the access.
var ErrAuth = errors.New("access refused")

// explain marks the errors of refused credentials with ErrAuth and says
// what to check; others pass unchanged.
func explain(err error) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.ErrorCode() {
	case "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "TokenRefreshRequired":
		return fmt.Errorf("%w: the server refused the credentials (check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, the profile, or the keys configured): %w", ErrAuth, err)
	case "AccessDenied", "Forbidden", "AllAccessDisabled":
		return fmt.Errorf("%w: the credentials may not do this: %w", ErrAuth, err)
	}
	return err
}

func lower(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}
