package targets

import (
	"context"
	"fmt"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/lang"
)

// Layer is one stage's result: an OCI layer stored in the cache.
type Layer struct {
	Digest digest.Digest // of the uncompressed tar (= its diff_id)
	Size   int64
	Path   string // the blob file in the cache: an uncompressed tar, random access allowed
	Kind   string // stage kind, for history entries
}

// ImageInfo names and describes the image a target is made from.
type ImageInfo struct {
	Name     string
	ID       digest.Digest // the image's last stage digest
	Pedigree []string      // root first
	Meta     lang.Metadata // description, os, arch, tags, owner, permission, labels
}

// Input is everything a Writer makes artifacts from.
type Input struct {
	Target          string // target name
	Image           ImageInfo
	Layers          []Layer // the image's whole chain, bottom (origin) first
	SourceDateEpoch *time.Time
	// Root is the image's root filesystem as a directory: a scratch
	// overlay of the cached layers, so a writer may add or change files
	// (an fstab, boot loader files) without touching the cache. Empty
	// when the caller provides none; tar and oci use Layers only.
	Root string
}

// Artifact is one file a Writer made.
type Artifact struct {
	Path      string // relative to the output directory, slash-separated
	MediaType string
}

// Writer makes one target kind's artifacts in dir (empty, created by the
// caller). The same input gives the same bytes.
type Writer interface {
	Write(ctx context.Context, in *Input, spec *Spec, dir string) ([]Artifact, error)
}

// For returns the Writer for a target kind.
func For(kind string) (Writer, error) {
	switch kind {
	case "tar":
		return Tar{}, nil
	case "oci":
		return OCI{}, nil
	case "netboot":
		return Netboot{}, nil
	case "raw":
		return Raw{}, nil
	case "qcow2":
		return QCOW2{}, nil
	}
	return nil, fmt.Errorf("unknown target kind %q", kind)
}

var (
	_ Writer = Tar{}
	_ Writer = OCI{}
)

// checkKind rejects a spec meant for another kind of target.
func checkKind(spec *Spec, kind string) error {
	if spec != nil && spec.TargetKind != "" && spec.TargetKind != kind {
		return fmt.Errorf("%s writer given a %q target", kind, spec.TargetKind)
	}
	return nil
}
