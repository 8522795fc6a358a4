// Package register performs the registration steps a cloud target's
// writer emits (register.json): it asks each cloud what it already has,
// prints a plan, and uploads only what is missing, idempotently by the
// artifact's digest. The clouds themselves are behind the Cloud
// interface, one implementation per infrastructure.
package register

import (
	"github.com/opencontainers/go-digest"
)

// FileName is the name of the registration steps file in OUT/<target>/.
const FileName = "register.json"

// ScriptName is the same steps as the cloud's own CLI commands.
const ScriptName = "register.sh"

// FileVersion is the format version of register.json.
const FileVersion = 1

// File is register.json: the registration of one target's artifacts
// into one cloud. Writers emit it; `fgimg register` performs it. It
// holds no secret: credentials come from the environment at register
// time (clouds.yaml and OS_*, ONE_XMLRPC and ONE_AUTH, ...).
type File struct {
	Version int `json:"version"`
	// Target is the target's name and Kind its kind ("openstack",
	// "opennebula", ...): Kind selects the Cloud implementation.
	Target string `json:"target"`
	Kind   string `json:"kind"`
	// Image is the fgimg image the artifacts were made from and
	// ImageID its digest (the image's last stage before adaptation).
	Image   string        `json:"image"`
	ImageID digest.Digest `json:"image_id"`
	// TargetDigest is the target's digest from the plan.
	TargetDigest digest.Digest `json:"target_digest"`
	// Cloud is which cloud the template named (a clouds.yaml entry for
	// OpenStack); empty means the environment's default.
	Cloud string `json:"cloud,omitempty"`
	// Replace retires older images of the same name and target that
	// fgimg registered, once the new one is active.
	Replace bool `json:"replace,omitempty"`
	// Steps run in order; a step may refer to an earlier step's result
	// (Step.Refs).
	Steps []Step `json:"steps"`
}

// Step registers one artifact as one image in the cloud.
type Step struct {
	// ID names the step within the file: "disk", "kernel", "ramdisk".
	ID string `json:"id"`
	// Artifact is the file in OUT/<target>/, slash-separated, with its
	// digest and size as the writer made it; register verifies both
	// before any upload.
	Artifact string        `json:"artifact"`
	Digest   digest.Digest `json:"digest"`
	Size     int64         `json:"size"`
	// Name is the image's name in the cloud.
	Name string `json:"name"`
	// Format is what the bytes are, in the cloud's own words (Glance
	// disk_format: qcow2, raw, aki, ari; OpenNebula: the image's
	// FORMAT), and ContainerFormat Glance's container_format (bare,
	// aki, ari); empty where the cloud has none.
	Format          string `json:"format"`
	ContainerFormat string `json:"container_format,omitempty"`
	// Visibility is the cloud's sharing of the image: Glance's
	// visibility, or OpenNebula's permission octal ("600", "640", "644").
	Visibility string `json:"visibility,omitempty"`
	// Properties are set on the image: fgimg's own (fgimg_digest,
	// fgimg_image, fgimg_target, ...), the field's (hw_firmware_type,
	// os_distro, ...) and the template's, merged in that order. For
	// OpenNebula they are template attributes.
	Properties map[string]string `json:"properties,omitempty"`
	// Refs maps a property to the ID of an earlier step whose image ID
	// fills it in at register time (kernel_id → "kernel").
	Refs map[string]string `json:"refs,omitempty"`
	// Options are the cloud's own settings for this step that are not
	// image properties (OpenNebula: datastore, dev_prefix, persistent).
	Options map[string]string `json:"options,omitempty"`
}
