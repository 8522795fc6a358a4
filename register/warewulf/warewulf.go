// Package warewulf registers warewulf targets with Warewulf v4 on the host
// it runs on: the target's root filesystem tarball is unpacked into a chroot
// directory (internal/layer's extraction), marked with /etc/fgimg-release (the tarball's digest, the
// target, the image and the name: Warewulf keeps no digest of its own), and
// imported with `wwctl image import DIR NAME`, then built with `wwctl image
// build NAME` and, when the target names a profile, given to it with `wwctl
// profile set --yes --image NAME PROFILE`.
//
// Images are compared by the mark before anything is imported: fgimg never
// relies on `wwctl image import --update`, which does not replace what the
// new tree lacks (warewulf#2073). A changed image takes the name (what
// profiles and nodes refer to); the older one is renamed NAME-<digest
// prefix> (`wwctl image rename --build`) and kept until it is retired
// (replace: `wwctl image delete --yes`). An image without the mark is never
// changed. Registrations run one at a time (baremetal.Lock).
package warewulf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/baremetal"
)

// ReleaseFile is the mark in the image.
const ReleaseFile = "etc/fgimg-release"

// Cloud is Warewulf on this host.
type Cloud struct {
	run baremetal.Runner
	// Wait receives the note that register waits for the bare-metal lock.
	Wait io.Writer

	mu     sync.Mutex
	listed map[string]*wwImage // by name, as Find last saw them (for Explain)
}

var (
	_ register.Cloud     = (*Cloud)(nil)
	_ register.Explainer = (*Cloud)(nil)
)

// Open returns the Warewulf of this host.
func Open(*register.File) (*Cloud, error) {
	return &Cloud{run: baremetal.Runner{Dirs: []string{"/usr/bin", "/usr/local/bin"}}, Wait: os.Stderr}, nil
}

// String implements register.Cloud.
func (c *Cloud) String() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("Warewulf on %s", h)
}

type wwImage struct {
	name string
	mark baremetal.Mark
	ours bool
}

// names lists Warewulf's images: wwctl image list prints a header (IMAGE
// NAME) and one name a line.
func (c *Cloud) names(ctx context.Context) ([]string, error) {
	out, err := c.run.Run(ctx, nil, "wwctl", "image", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.EqualFold(strings.Join(f, " "), "IMAGE NAME") || strings.Trim(f[0], "-=+|") == "" {
			continue
		}
		names = append(names, strings.Trim(f[0], "|"))
	}
	return names, nil
}

// show reads the mark of image name from its root filesystem (wwctl image
// show prints its directory).
func (c *Cloud) show(ctx context.Context, name string) (*wwImage, error) {
	out, err := c.run.Run(ctx, nil, "wwctl", "image", "show", name)
	if err != nil {
		return nil, err
	}
	root := strings.TrimSpace(string(out))
	b, err := os.ReadFile(filepath.Join(root, ReleaseFile))
	if errors.Is(err, fs.ErrNotExist) {
		return &wwImage{name: name}, nil
	}
	if err != nil {
		return nil, err
	}
	m, ok := baremetal.ParseMark(string(b))
	return &wwImage{name: name, mark: m, ours: ok}, nil
}

func (c *Cloud) list(ctx context.Context) ([]*wwImage, error) {
	names, err := c.names(ctx)
	if err != nil {
		return nil, err
	}
	var out []*wwImage
	for _, n := range names {
		im, err := c.show(ctx, n)
		if err != nil {
			return nil, err
		}
		out = append(out, im)
	}
	return out, nil
}

func (im *wwImage) image() register.Image {
	// Its name is Warewulf's, not the one the template asked for: an
	// older image kept as NAME-<digest> is never what the name holds.
	return register.Image{ID: im.name, Name: im.name, State: register.StateReady, Status: "imported",
		Digest: im.mark.Digest, Step: im.mark.Step, Properties: im.mark.Properties()}
}

// Find implements register.Cloud: the images marked by fgimg for target
// (any target when "").
func (c *Cloud) Find(ctx context.Context, target string) ([]register.Image, error) {
	all, err := c.list(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.listed = map[string]*wwImage{}
	for _, im := range all {
		c.listed[im.name] = im
	}
	c.mu.Unlock()
	var out []register.Image
	for _, im := range all {
		if im.ours && (target == "" || im.mark.Target == target) {
			out = append(out, im.image())
		}
	}
	return out, nil
}

// Upload implements register.Cloud.
func (c *Cloud) Upload(ctx context.Context, s register.Step, props map[string]string, artifact string) (register.Image, error) {
	unlock, err := baremetal.Lock(ctx, c.Wait)
	if err != nil {
		return register.Image{}, err
	}
	defer unlock()
	names, err := c.names(ctx)
	if err != nil {
		return register.Image{}, err
	}
	mark := baremetal.Mark{Digest: s.Digest, Target: props[register.PropTarget], Image: props["fgimg_image"], Step: s.ID, Name: s.Name}
	for _, n := range names {
		if n != s.Name {
			continue
		}
		old, err := c.show(ctx, n)
		if err != nil {
			return register.Image{}, err
		}
		switch {
		case !old.ours:
			return register.Image{}, fmt.Errorf("Warewulf image %q exists and fgimg did not register it (no /%s): give the target another name", n, ReleaseFile)
		case old.mark.Target != mark.Target:
			return register.Image{}, fmt.Errorf("Warewulf image %q is target %q's: give the target another name", n, old.mark.Target)
		case old.mark.Digest == s.Digest:
			return old.image(), nil // registered while this register waited for the lock
		}
		kept := baremetal.KeptName(n, old.mark.Digest)
		keep := []string{"image", "rename", "--build", n, kept}
		if slices.Contains(names, kept) {
			ki, err := c.show(ctx, kept)
			if err != nil {
				return register.Image{}, err
			}
			if !ki.ours || ki.mark.Digest != old.mark.Digest {
				return register.Image{}, fmt.Errorf("keeping Warewulf image %q: %q exists and is another image", n, kept)
			}
			keep = []string{"image", "delete", "--yes", n} // kept already, when this image held the name before
		}
		if _, err := c.run.Run(ctx, nil, "wwctl", keep...); err != nil {
			return register.Image{}, fmt.Errorf("keeping the older image: %w", err)
		}
	}
	chroot, err := os.MkdirTemp(filepath.Dir(filepath.Dir(artifact)), ".fgimg-warewulf-")
	if err != nil {
		return register.Image{}, err
	}
	defer os.RemoveAll(chroot)
	if err := unpack(artifact, chroot); err != nil {
		return register.Image{}, fmt.Errorf("unpacking %s: %w", s.Artifact, err)
	}
	rel := filepath.Join(chroot, ReleaseFile)
	if err := os.MkdirAll(filepath.Dir(rel), 0o755); err != nil {
		return register.Image{}, err
	}
	os.Remove(rel) // never written through a symlink of the image
	if err := os.WriteFile(rel, []byte(strings.Join(mark.Fields(), "\n")+"\n"), 0o644); err != nil {
		return register.Image{}, err
	}
	if _, err := c.run.Run(ctx, nil, "wwctl", "image", "import", chroot, s.Name); err != nil {
		return register.Image{}, err
	}
	if _, err := c.run.Run(ctx, nil, "wwctl", "image", "build", s.Name); err != nil {
		return register.Image{}, err
	}
	if p := s.Options["profile"]; p != "" {
		if _, err := c.run.Run(ctx, nil, "wwctl", "profile", "set", "--yes", "--image", s.Name, p); err != nil {
			return register.Image{}, err
		}
	}
	return (&wwImage{name: s.Name, mark: mark, ours: true}).image(), nil
}

// unpack extracts the root filesystem tarball into the chroot directory,
// owners, modes, devices and extended attributes as they are.
func unpack(artifact, chroot string) error {
	f, err := os.Open(artifact)
	if err != nil {
		return err
	}
	defer f.Close()
	return layer.Apply(f, chroot, layer.ApplyOptions{})
}

// Retire implements register.Cloud: the image im was (under its name, or
// kept as NAME-<digest prefix> since) is deleted; one already gone is left
// alone.
func (c *Cloud) Retire(ctx context.Context, im register.Image) error {
	unlock, err := baremetal.Lock(ctx, c.Wait)
	if err != nil {
		return err
	}
	defer unlock()
	all, err := c.list(ctx)
	if err != nil {
		return err
	}
	victim := ""
	for _, w := range all {
		if w.ours && baremetal.Holds(im, w.name, w.mark) {
			victim = w.name
			if w.name == im.ID {
				break
			}
		}
	}
	if victim == "" {
		return nil
	}
	_, err = c.run.Run(ctx, nil, "wwctl", "image", "delete", "--yes", victim)
	return err
}

// Delete implements register.Cloud as Retire.
func (c *Cloud) Delete(ctx context.Context, im register.Image) error { return c.Retire(ctx, im) }

// Explain implements register.Explainer: the commands of each action, as
// Upload and Retire will run them given what Find saw.
func (c *Cloud) Explain(a register.Action, s *register.Step) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch a.Op {
	case register.OpUpload:
		if s == nil {
			return nil
		}
		var lines []string
		if old := c.listed[s.Name]; old != nil {
			if !old.ours {
				lines = append(lines, fmt.Sprintf("Warewulf image %q exists and is not fgimg's: register will stop here", s.Name))
			} else if old.mark.Digest != s.Digest {
				lines = append(lines, fmt.Sprintf("wwctl image rename --build %s %s (the older image is kept)", s.Name, baremetal.KeptName(s.Name, old.mark.Digest)))
			}
		}
		lines = append(lines,
			fmt.Sprintf("unpack %s into a chroot; /%s: FGIMG_DIGEST=%s", s.Artifact, ReleaseFile, s.Digest),
			fmt.Sprintf("wwctl image import CHROOT %s; wwctl image build %s", s.Name, s.Name))
		if p := s.Options["profile"]; p != "" {
			lines = append(lines, fmt.Sprintf("wwctl profile set --yes --image %s %s", s.Name, p))
		}
		return lines
	case register.OpRetire, register.OpDelete:
		return []string{"wwctl image delete --yes " + baremetal.RetireName(*a.Image, s)}
	}
	return nil
}
