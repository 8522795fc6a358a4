// Package openstack is register's Cloud for OpenStack: images in Glance
// (image service v2), with credentials from clouds.yaml (OS_CLOUD, or
// the template's cloud) or else the OS_* environment, as the openstack
// client takes them. It uses gophercloud.
//
// Images are created with their properties, their bytes streamed with
// PUT /v2/images/{id}/file, and returned once active. Retire hides an
// image (os_hidden=true): instances and rebuilds that use it keep
// working, and image lists no longer offer it, which is Glance's own
// way to rotate images; deactivating would break rebuilds of running
// servers.
package openstack

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/config"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/fgimg/fgimg/register"
	"github.com/opencontainers/go-digest"
)

// Cloud is one OpenStack cloud's image service.
type Cloud struct {
	name   string // how String names it
	client *gophercloud.ServiceClient
	// body wraps an upload's reader (tests interrupt uploads with it).
	body func(io.Reader) io.Reader
	// Poll is how often Upload checks that an image became active.
	poll time.Duration
}

var _ register.Cloud = (*Cloud)(nil)

// transport, when set (by tests), carries every request.
var transport http.RoundTripper

// callTimeout bounds every call but an upload's transfer.
const callTimeout = 2 * time.Minute

// Open authenticates to the cloud f names (f.Cloud, else OS_CLOUD, else
// the OS_* environment) and returns its image service. Its errors name
// the cloud and the setting to fix, and never hold a secret.
func Open(ctx context.Context, f *register.File) (*Cloud, error) {
	name := f.Cloud
	if name == "" {
		name = os.Getenv("OS_CLOUD")
	}
	var (
		ao      gophercloud.AuthOptions
		eo      gophercloud.EndpointOpts
		tlsConf *tls.Config
		c       = &Cloud{poll: 500 * time.Millisecond}
		setting string // what to fix when Keystone refuses the credentials
	)
	if name != "" {
		file := cloudsFile()
		var err error
		ao, eo, tlsConf, err = clouds.Parse(clouds.WithCloudName(name))
		if err != nil {
			var nf clouds.ErrFileNotFound
			if errors.As(err, &nf) {
				return nil, fmt.Errorf("openstack cloud %q: no clouds.yaml found (looked in %s); set OS_CLIENT_CONFIG_FILE to its path, or choose another cloud with OS_CLOUD", name, strings.Join(cloudsPaths(), ", "))
			}
			return nil, fmt.Errorf("openstack cloud %q: %s: %v; check OS_CLOUD and the file (OS_CLIENT_CONFIG_FILE sets its path)", name, file, err)
		}
		c.name = fmt.Sprintf("openstack cloud %q (%s)", name, ao.IdentityEndpoint)
		setting = fmt.Sprintf("the credentials of cloud %q in %s (or its secure.yaml)", name, file)
	} else {
		var err error
		ao, err = gopenstack.AuthOptionsFromEnv()
		if err != nil {
			var missing gophercloud.ErrMissingEnvironmentVariable
			if errors.As(err, &missing) {
				return nil, fmt.Errorf("openstack: no cloud is configured: set OS_CLOUD to an entry of clouds.yaml (or name one with the target's cloud attribute), or set the OS_* variables (%s is missing)", missing.EnvironmentVariable)
			}
			return nil, fmt.Errorf("openstack: the OS_* environment: %v", err)
		}
		eo = gophercloud.EndpointOpts{Region: os.Getenv("OS_REGION_NAME")}
		c.name = fmt.Sprintf("openstack (OS_AUTH_URL %s)", ao.IdentityEndpoint)
		setting = "OS_USERNAME and OS_PASSWORD (or OS_APPLICATION_CREDENTIAL_*)"
	}
	if ao.IdentityEndpoint == "" {
		return nil, fmt.Errorf("%s: no auth_url; set it in clouds.yaml or OS_AUTH_URL", c.name)
	}
	ao.AllowReauth = true // a long upload may outlive its token
	actx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var provider *gophercloud.ProviderClient
	var err error
	switch {
	case transport != nil:
		provider, err = config.NewProviderClient(actx, ao, config.WithHTTPClient(http.Client{Transport: transport}))
	case tlsConf != nil:
		provider, err = config.NewProviderClient(actx, ao, config.WithTLSConfig(tlsConf))
	default:
		provider, err = config.NewProviderClient(actx, ao)
	}
	if err != nil {
		if code, ok := statusCode(err); ok && code == http.StatusUnauthorized {
			return nil, fmt.Errorf("%s: Keystone refused the credentials (401 %s); check %s", c.name, cloudMessage(err), setting)
		}
		return nil, fmt.Errorf("%s: authenticating: %s", c.name, cloudMessage(err))
	}
	c.client, err = gopenstack.NewImageV2(provider, eo)
	if err != nil {
		return nil, fmt.Errorf("%s: no image service (Glance) in the catalog: %v", c.name, err)
	}
	return c, nil
}

// cloudsPaths are where the openstack client looks for clouds.yaml.
func cloudsPaths() []string {
	if p := os.Getenv("OS_CLIENT_CONFIG_FILE"); p != "" {
		return []string{p}
	}
	cfg, err := os.UserConfigDir()
	if err != nil {
		cfg = "~/.config"
	}
	return []string{"./clouds.yaml", filepath.Join(cfg, "openstack", "clouds.yaml"), "/etc/openstack/clouds.yaml"}
}

// cloudsFile is the clouds.yaml the cloud comes from, for messages.
func cloudsFile() string {
	for _, p := range cloudsPaths() {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "clouds.yaml"
}

func (c *Cloud) String() string { return c.name }

// Find lists the images whose fgimg_target property is target, in
// every state but hidden: a hidden image is one Retire retired, which
// register never reuses, deletes or retires again, and leaving them out
// halves the calls a register with nothing to do makes. With target ""
// it lists the images that have a fgimg_target (Glance cannot filter on
// a property's presence: it pages through the visible images, 1000 at a
// time, its usual maximum).
func (c *Cloud) Find(ctx context.Context, target string) ([]register.Image, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	var out []register.Image
	q := query{"limit": {"1000"}}
	if target != "" {
		q[register.PropTarget] = []string{target}
	}
	err := images.List(c.client, q).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		list, err := images.ExtractImages(p)
		for _, im := range list {
			if t, _ := im.Properties[register.PropTarget].(string); t != "" && (target == "" || t == target) {
				out = append(out, convert(im))
			}
		}
		return true, err
	})
	if err != nil {
		return nil, c.fault("listing images", err)
	}
	return out, nil
}

// query is a Glance image list query, custom property filters included.
type query url.Values

func (q query) ToImageListQuery() (string, error) { return "?" + url.Values(q).Encode(), nil }

// Upload creates the image with its properties and streams the file to
// it, then waits for it to be active.
func (c *Cloud) Upload(ctx context.Context, step register.Step, props map[string]string, path string) (register.Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return register.Image{}, err
	}
	defer f.Close()
	if err := checkFormat(f, step.Format); err != nil {
		return register.Image{}, fmt.Errorf("%s: %w", path, err)
	}
	opts := images.CreateOpts{
		Name: step.Name, DiskFormat: step.Format, ContainerFormat: step.ContainerFormat, Properties: props,
	}
	if opts.ContainerFormat == "" {
		opts.ContainerFormat = "bare"
	}
	if step.Visibility != "" {
		v := images.ImageVisibility(step.Visibility)
		opts.Visibility = &v
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	created, err := images.Create(cctx, c.client, opts).Extract()
	cancel()
	if err != nil {
		return register.Image{}, c.fault("creating image "+step.Name, err)
	}
	im := convert(*created)
	if err := c.put(ctx, created.ID, f, step.Size); err != nil {
		return im, c.fault(fmt.Sprintf("uploading %s to image %s", filepath.Base(path), created.ID), err)
	}
	for {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		got, err := images.Get(cctx, c.client, created.ID).Extract()
		cancel()
		if err != nil {
			return im, c.fault("checking image "+created.ID, err)
		}
		im = convert(*got)
		switch im.State {
		case register.StateReady:
			if got.SizeBytes != step.Size {
				return im, fmt.Errorf("%s: image %s holds %d bytes, not the %d of %s", c, im.ID, got.SizeBytes, step.Size, path)
			}
			return im, nil
		case register.StateFailed:
			return im, fmt.Errorf("%s: image %s is %s after the upload", c, im.ID, im.Status)
		}
		select {
		case <-ctx.Done():
			return im, context.Cause(ctx)
		case <-time.After(c.poll):
		}
	}
}

// put streams size bytes of f to the image's data (PUT
// /v2/images/{id}/file) with a Content-Length: gophercloud's
// imagedata.Upload sends a body of unknown length chunked, which Glance
// reads markedly slower than a plain body. A token that expired on the
// way is renewed and the upload made again.
func (c *Cloud) put(ctx context.Context, id string, f *os.File, size int64) error {
	p := c.client.ProviderClient
	for attempt := 0; ; attempt++ {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		var body io.Reader = f
		if c.body != nil {
			body = c.body(body)
		}
		url := c.client.ServiceURL("images", id, "file")
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, io.NopCloser(body))
		if err != nil {
			return err
		}
		req.ContentLength = size
		token := p.Token()
		for k, v := range p.AuthenticatedHeaders() {
			req.Header.Set(k, v)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := p.HTTPClient.Do(req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusOK:
			return nil
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0:
			if err := p.Reauthenticate(ctx, token); err != nil {
				return err
			}
			continue
		}
		return gophercloud.ErrUnexpectedResponseCode{
			URL: url, Method: http.MethodPut, Expected: []int{http.StatusNoContent},
			Actual: resp.StatusCode, Body: msg, ResponseHeader: resp.Header,
		}
	}
}

// Retire hides the image (os_hidden=true).
func (c *Cloud) Retire(ctx context.Context, im register.Image) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	_, err := images.Update(ctx, c.client, im.ID, images.UpdateOpts{images.ReplaceImageHidden{NewHidden: true}}).Extract()
	return c.fault("hiding image "+im.ID, err)
}

// Delete deletes the image.
func (c *Cloud) Delete(ctx context.Context, im register.Image) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	err := images.Delete(ctx, c.client, im.ID).ExtractErr()
	if code, ok := statusCode(err); ok && code == http.StatusNotFound {
		return nil
	}
	return c.fault("deleting image "+im.ID, err)
}

// convert is a Glance image as register sees it.
func convert(im images.Image) register.Image {
	props := map[string]string{}
	for k, v := range im.Properties {
		if s, ok := v.(string); ok {
			props[k] = s
		}
	}
	out := register.Image{
		ID: im.ID, Name: im.Name, Status: string(im.Status), Size: im.SizeBytes, Properties: props,
		Step: props[register.PropStep], Updated: im.UpdatedAt,
	}
	out.Digest, _ = digest.Parse(props[register.PropDigest])
	switch im.Status {
	case images.ImageStatusActive:
		out.State = register.StateReady
		if im.Hidden {
			out.State, out.Status = register.StateRetired, "active, hidden"
		}
	case images.ImageStatusDeactivated:
		out.State = register.StateRetired
	case images.ImageStatusKilled, images.ImageStatusDeleted, "pending_delete":
		out.State = register.StateFailed
	default: // queued, saving, importing, uploading
		out.State = register.StateIncomplete
	}
	return out
}

// checkFormat refuses to declare bytes as what they are not: Glance
// takes qcow2 bytes declared raw, and a server booted from them would
// see a qcow2 header for a disk.
func checkFormat(f *os.File, format string) error {
	magic := make([]byte, 4)
	n, _ := f.ReadAt(magic, 0)
	isQcow2 := n == 4 && bytes.Equal(magic, []byte("QFI\xfb"))
	switch {
	case format == "qcow2" && !isQcow2:
		return errors.New("declared qcow2 but has no qcow2 header")
	case format != "qcow2" && isQcow2:
		return fmt.Errorf("declared %s but is a qcow2 image", format)
	}
	return nil
}

// fault is err from Glance, said with the cloud's own message, and
// marked temporary when retrying may help (5xx, timeouts, resets).
func (c *Cloud) fault(what string, err error) error {
	if err == nil {
		return nil
	}
	msg := fmt.Errorf("%s: %s: %s", c, what, cloudMessage(err))
	if code, ok := statusCode(err); ok {
		if code >= 500 || code == http.StatusTooManyRequests {
			return register.Temporary(msg)
		}
		return msg
	}
	var ne net.Error
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %s: %w", c, what, err)
	}
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, context.DeadlineExceeded) {
		return register.Temporary(msg)
	}
	return msg
}

func statusCode(err error) (int, bool) {
	var sc interface{ GetStatusCode() int }
	if errors.As(err, &sc) {
		return sc.GetStatusCode(), true
	}
	return 0, false
}

var tags = regexp.MustCompile(`<[^>]*>`)

// cloudMessage is what the cloud said: the message of an error response
// (JSON or HTML) without gophercloud's wrapping, or err itself.
func cloudMessage(err error) string {
	var ue gophercloud.ErrUnexpectedResponseCode
	if !errors.As(err, &ue) {
		return err.Error()
	}
	body := bytes.TrimSpace(ue.Body)
	var j struct {
		Message string `json:"message"`
		Error   struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	msg := ""
	if json.Unmarshal(body, &j) == nil {
		msg = j.Message + j.Error.Message
	}
	if msg == "" {
		msg = strings.Join(strings.Fields(tags.ReplaceAllString(string(body), " ")), " ")
	}
	return fmt.Sprintf("%s %s: HTTP %d: %s", ue.Method, ue.URL, ue.Actual, msg)
}
