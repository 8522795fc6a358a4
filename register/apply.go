package register

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"
)

// Retry is how register retries a cloud's temporary faults (see
// Temporary): Attempts tries in all, waiting First, then twice as long
// each time.
type Retry struct {
	Attempts int
	First    time.Duration
}

// DefaultRetry gives a cloud about half a minute to recover.
var DefaultRetry = Retry{Attempts: 5, First: 2 * time.Second}

// Applied is what Apply did for one step.
type Applied struct {
	Step     string `json:"step"`
	Image    Image  `json:"image"`
	Uploaded bool   `json:"uploaded"`
}

// Apply performs p for t in cloud: it deletes stale uploads, uploads
// (with the references and extra properties resolved) or reuses each
// step's image, and retires the replaced images last, once every new
// image is ready. It returns each step's image, in step order. extra
// properties (fgimg_template_commit) are set on uploads where the step
// does not set them itself.
func Apply(ctx context.Context, cloud Cloud, t *Target, p *Plan, extra map[string]string, r Retry) ([]Applied, error) {
	for _, a := range p.Actions {
		if a.Op == OpDelete {
			im := *a.Image
			if err := retry(ctx, r, func() error { return cloud.Delete(ctx, im) }); err != nil {
				return nil, fmt.Errorf("deleting stale upload %s from %s: %w", im.ID, cloud, err)
			}
		}
	}
	ids := map[string]string{}
	var done []Applied
	for _, a := range p.Actions {
		switch a.Op {
		case OpSkip:
			ids[a.Step] = a.Image.ID
			done = append(done, Applied{Step: a.Step, Image: *a.Image})
		case OpUpload:
			s := t.step(a.Step)
			props := uploadProps(t.File.Target, s, ids, extra)
			var im Image
			err := retry(ctx, r, func() error {
				var err error
				im, err = cloud.Upload(ctx, s, props, t.path(s))
				if err != nil && im.ID != "" && IsTemporary(err) {
					// The next attempt makes a new image: do not leave this one queued.
					_ = cloud.Delete(context.WithoutCancel(ctx), im)
				}
				return err
			})
			if err != nil {
				return done, fmt.Errorf("uploading %s to %s: %w", s.Artifact, cloud, err)
			}
			ids[a.Step] = im.ID
			done = append(done, Applied{Step: a.Step, Image: im, Uploaded: true})
		}
	}
	for _, a := range p.Actions {
		if a.Op == OpRetire {
			im := *a.Image
			if err := retry(ctx, r, func() error { return cloud.Retire(ctx, im) }); err != nil {
				return done, fmt.Errorf("retiring image %s in %s: %w", im.ID, cloud, err)
			}
		}
	}
	return done, nil
}

func (t *Target) step(id string) Step {
	for _, s := range t.File.Steps {
		if s.ID == id {
			return s
		}
	}
	panic("register: plan names step " + id + ", which the file does not have")
}

// uploadProps are the properties an upload of s sets: the step's own,
// extra where s does not set them, fgimg's identifying properties, and
// the references resolved to the images of earlier steps.
func uploadProps(target string, s Step, ids, extra map[string]string) map[string]string {
	props := map[string]string{}
	maps.Copy(props, extra)
	maps.Copy(props, s.Properties)
	props[PropTarget] = target
	props[PropStep] = s.ID
	props[PropDigest] = string(s.Digest)
	for prop, ref := range s.Refs {
		props[prop] = ids[ref]
	}
	return props
}

// retry calls fn until it succeeds, fails with an error that is not
// Temporary, or has been tried r.Attempts times; then it returns fn's
// last error, which carries the cloud's own message.
func retry(ctx context.Context, r Retry, fn func() error) error {
	wait := r.First
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !IsTemporary(err) {
			return err
		}
		if attempt >= r.Attempts {
			if attempt > 1 {
				return fmt.Errorf("%w (tried %d times)", err, attempt)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, context.Cause(ctx))
		case <-time.After(wait):
		}
		wait *= 2
	}
}
