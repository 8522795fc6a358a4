// Package nimbus is register's Cloud for Nimbus: an image is an object in
// the Cumulus repository (Nimbus's S3 REST service) at
// BUCKET/BASEKEY/CANONICALID/NAME, where cloud-client looks for it, so
// that `cloud-client.sh --run --name NAME` starts it. fgimg's
// properties (fgimg_digest, fgimg_target, ...) are the object's user
// metadata (x-amz-meta-fgimg-digest, ...). It uses internal/s3client.
//
// The repository, the user's canonical ID and keys come from
// cloud-client's conf/cloud.properties (vws.repository,
// vws.repository.canonicalid, vws.repository.s3id and .s3key), named by
// NIMBUS_CLOUD_PROPERTIES, else ~/.nimbus/cloud.properties; the target's
// endpoint, NIMBUS_CANONICAL_ID and AWS_ACCESS_KEY_ID with
// AWS_SECRET_ACCESS_KEY take precedence. Cumulus has no image states: an object is
// ready once written, and Retire and Delete remove it.
package nimbus

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/s3client"
	"github.com/fgimg/fgimg/register"
)

// The Step.Options the nimbus writer sets.
const (
	OptBucket  = "bucket"   // the repository bucket (cloud-client: vws.repository.s3bucket, "Repo")
	OptBaseKey = "base_key" // (vws.repository.s3basekey, "VMS")
)

// Cloud is one user's images in one Cumulus repository.
type Cloud struct {
	name           string
	s3             *s3client.Client
	bucket, prefix string // prefix: BASEKEY/CANONICALID/
}

var _ register.Cloud = (*Cloud)(nil)

const callTimeout = 2 * time.Minute

// Open connects to the repository f names (f.Cloud, else
// cloud.properties' vws.repository). It does not contact it.
func Open(ctx context.Context, f *register.File) (*Cloud, error) {
	props, file, err := cloudProperties()
	if err != nil {
		return nil, err
	}
	endpoint := f.Cloud
	if endpoint == "" && props["vws.repository"] != "" {
		endpoint = "cumulus://" + props["vws.repository"]
	}
	if endpoint == "" {
		return nil, fmt.Errorf("nimbus: no Cumulus repository: set the target's endpoint, or vws.repository in %s", file)
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("nimbus: %q is not a repository URL (cumulus://HOST:PORT, https://HOST:PORT)", endpoint)
	}
	if u.Scheme == "cumulus" { // cloud-client's repository: HTTPS
		u.Scheme = "https"
	}
	id := os.Getenv("NIMBUS_CANONICAL_ID")
	if id == "" {
		id = props["vws.repository.canonicalid"]
	}
	if id == "" || strings.ContainsAny(id, "/") {
		return nil, fmt.Errorf("nimbus %s: no canonical user ID: set NIMBUS_CANONICAL_ID, or vws.repository.canonicalid in %s (nimbus-new-user prints it)", u.Host, file)
	}
	st := f.Steps[0].Options
	bucket, base := st[OptBucket], strings.Trim(st[OptBaseKey], "/")
	cfg := s3client.Config{Endpoint: u.Scheme + "://" + u.Host}
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		cfg.AccessKey, cfg.SecretKey = props["vws.repository.s3id"], props["vws.repository.s3key"]
	}
	c := &Cloud{name: fmt.Sprintf("nimbus cumulus %s (%s/%s/%s)", cfg.Endpoint, bucket, base, id), bucket: bucket, prefix: base + "/" + id + "/"}
	if c.s3, err = s3client.New(ctx, cfg); err != nil {
		return nil, err
	}
	return c, nil
}

// cloudProperties reads cloud-client's cloud.properties, if there is
// one; file names it for messages.
func cloudProperties() (props map[string]string, file string, err error) {
	file = os.Getenv("NIMBUS_CLOUD_PROPERTIES")
	explicit := file != ""
	if !explicit {
		home, _ := os.UserHomeDir()
		file = filepath.Join(home, ".nimbus", "cloud.properties")
	}
	props = map[string]string{}
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) && !explicit {
		return props, file, nil
	}
	if err != nil {
		return nil, file, fmt.Errorf("nimbus: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			k, v, _ = strings.Cut(line, ":")
		}
		props[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return props, file, sc.Err()
}

func (c *Cloud) String() string { return c.name }

// Metadata is the object metadata for properties: keys in lower case
// with - for _, as HTTP headers carry them everywhere.
func Metadata(props map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range props {
		out[strings.ReplaceAll(strings.ToLower(k), "_", "-")] = v
	}
	return out
}

// properties is metadata back: fgimg's own keys get their _ again.
func properties(meta map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range meta {
		if strings.HasPrefix(k, "fgimg-") {
			k = strings.ReplaceAll(k, "-", "_")
		}
		out[k] = v
	}
	return out
}

// Find lists the user's images that carry fgimg_target (= target unless
// target is "").
func (c *Cloud) Find(ctx context.Context, target string) ([]register.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var out []register.Image
	p := s3.NewListObjectsV2Paginator(c.s3.S3(), &s3.ListObjectsV2Input{Bucket: &c.bucket, Prefix: aws.String(c.prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			if s3client.NotFound(err) {
				return nil, nil // no bucket yet: no images
			}
			return nil, fmt.Errorf("%s: listing images: %w", c, err)
		}
		for _, o := range page.Contents {
			key := aws.ToString(o.Key)
			st, found, err := c.s3.Stat(ctx, c.bucket, key)
			if err != nil {
				return nil, err
			}
			if !found {
				continue
			}
			im := c.image(key, st, aws.ToTime(o.LastModified))
			if t := im.Properties[register.PropTarget]; t != "" && (target == "" || t == target) {
				out = append(out, im)
			}
		}
	}
	return out, nil
}

func (c *Cloud) image(key string, o s3client.Object, updated time.Time) register.Image {
	props := properties(o.Metadata)
	im := register.Image{ID: key, Name: strings.TrimPrefix(key, c.prefix), State: register.StateReady, Status: "stored",
		Size: o.Size, Properties: props, Step: props[register.PropStep], Updated: updated}
	im.Digest, _ = digest.Parse(props[register.PropDigest])
	return im
}

// Upload writes the image into the repository as the step's name,
// with fgimg's properties as its metadata; an object of that name with
// this digest is kept as it is.
func (c *Cloud) Upload(ctx context.Context, step register.Step, props map[string]string, path string) (register.Image, error) {
	if strings.Contains(step.Name, "/") {
		return register.Image{}, fmt.Errorf("%s: image name %q has a /", c, step.Name)
	}
	key := c.prefix + step.Name
	o, found, err := c.s3.Stat(ctx, c.bucket, key)
	if err != nil {
		return register.Image{}, fmt.Errorf("%s: %w", c, err)
	}
	if !found || o.Size != step.Size || o.Metadata["fgimg-digest"] != string(step.Digest) {
		if err := c.s3.Upload(ctx, c.bucket, key, path, Metadata(props), nil); err != nil {
			return register.Image{}, fmt.Errorf("%s: %w", c, err)
		}
		if o, found, err = c.s3.Stat(ctx, c.bucket, key); err != nil || !found {
			return register.Image{}, fmt.Errorf("%s: %s is not there after the upload (%v)", c, key, err)
		}
	}
	if o.Size != step.Size {
		return register.Image{}, fmt.Errorf("%s: %s holds %d bytes, not the %d of %s", c, key, o.Size, step.Size, path)
	}
	return c.image(key, o, time.Now()), nil
}

// Retire removes the image from the repository: Cumulus has no way to
// hide one, and running VMs have their own copy.
func (c *Cloud) Retire(ctx context.Context, im register.Image) error { return c.Delete(ctx, im) }

// Delete removes the image's object.
func (c *Cloud) Delete(ctx context.Context, im register.Image) error {
	if !strings.HasPrefix(im.ID, c.prefix) {
		return fmt.Errorf("%s: %s is not one of this user's images", c, im.ID)
	}
	if err := c.s3.Delete(ctx, c.bucket, im.ID); err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	return nil
}
