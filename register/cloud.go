package register

import (
	"context"
	"errors"
	"time"

	"github.com/opencontainers/go-digest"
)

// Cloud is one infrastructure's image service as register needs it.
// Implementations live in their own packages (register/openstack,
// register/opennebula, ...) and are opened from a File by the CLI.
// They never log or return a secret.
type Cloud interface {
	// String names the cloud for messages and plans, such as
	// `openstack cloud "lab" (http://127.0.0.1:5000/v3)`.
	String() string
	// Find lists the images in the cloud that fgimg registered for
	// target (its fgimg_target property or attribute), in every state,
	// so that register can skip, clean up and retire. It may leave out
	// images it retired itself (Glance: hidden ones), which register
	// never reuses, deletes or retires again. With target "" it lists
	// the images fgimg registered for any target: register asks each
	// cloud once per run, for all the targets it registers there.
	Find(ctx context.Context, target string) ([]Image, error)
	// Upload creates an image for step, with props (step.Properties
	// with Refs resolved), from the artifact at path, and returns it
	// once the cloud holds all its bytes. When it fails after the
	// image was created, it returns that image (with its ID) beside
	// the error, so that register can delete it before trying again.
	Upload(ctx context.Context, step Step, props map[string]string, path string) (Image, error)
	// Retire takes an image that fgimg registered out of use by the
	// cloud's own means (Glance: hide or deactivate; OpenNebula:
	// disable); Delete removes one (a stale upload, or -replace with
	// deletion).
	Retire(ctx context.Context, im Image) error
	Delete(ctx context.Context, im Image) error
}

// Image is one image in a cloud, as Find and Upload report it.
type Image struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// State is the cloud's own status, normalised: StateReady,
	// StateIncomplete (queued, saving, importing, locked), StateRetired
	// (deactivated, hidden, disabled) or StateFailed.
	State string `json:"state"`
	// Status is the cloud's own word for it, for messages.
	Status string `json:"status"`
	// Digest is the fgimg_digest the image was registered with, Step
	// its fgimg_step (disk, kernel, ramdisk).
	Digest digest.Digest `json:"digest,omitempty"`
	Step   string        `json:"step,omitempty"`
	Size   int64         `json:"size,omitempty"`
	// Properties are the image's properties or template attributes.
	Properties map[string]string `json:"properties,omitempty"`
	// Updated is when the cloud last changed the image (zero if it
	// does not say): how long a stale upload has been stuck.
	Updated time.Time `json:"updated,omitempty"`
}

// Temporary marks err as a fault that may pass (the cloud's 5xx, a
// timeout, a reset connection): register retries the call with backoff
// before reporting it. A Cloud wraps such errors with it; any other
// error is reported at once.
func Temporary(err error) error {
	if err == nil {
		return nil
	}
	return temporary{err}
}

type temporary struct{ error }

func (t temporary) Unwrap() error { return t.error }

// IsTemporary reports whether err, or an error it wraps, was marked by
// Temporary.
func IsTemporary(err error) bool {
	var t temporary
	return errors.As(err, &t)
}

// Image states, normalised across clouds.
const (
	StateReady      = "ready"
	StateIncomplete = "incomplete"
	StateRetired    = "retired"
	StateFailed     = "failed"
)
