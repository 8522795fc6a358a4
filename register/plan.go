package register

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fgimg/fgimg/internal/bytesize"
)

// The properties fgimg sets on every image it registers, by which it
// recognises its own images: the target, the step and the artifact's
// digest. An image without fgimg_target is never touched.
const (
	PropTarget         = "fgimg_target"
	PropStep           = "fgimg_step"
	PropDigest         = "fgimg_digest"
	PropTemplateCommit = "fgimg_template_commit"
)

// Action kinds, with the sign the plan prints them with.
const (
	OpUpload = "upload" // +
	OpSkip   = "skip"   // =
	OpDelete = "delete" // -
	OpRetire = "retire" // ~
)

// Action is one thing a Plan does.
type Action struct {
	Op string `json:"op"`
	// Step is the register.json step an upload or skip performs, or a
	// retired image stood for.
	Step     string `json:"step,omitempty"`
	Artifact string `json:"artifact,omitempty"`
	Size     int64  `json:"size,omitempty"`
	Name     string `json:"name,omitempty"`
	// Image is the cloud's image a skip reuses, or a delete or retire
	// acts on.
	Image *Image `json:"image,omitempty"`
	// Why says why an upload cannot reuse anything, or why a delete.
	Why string `json:"why,omitempty"`
}

// Plan is what register does for one target in one cloud, in order:
// stale uploads are deleted, each step is uploaded or skipped, then
// (with Replace) the images the new ones replace are retired.
type Plan struct {
	Target  string   `json:"target"`
	Cloud   string   `json:"cloud"`
	Actions []Action `json:"actions"`
}

// NewPlan decides what to do for f given the images the cloud holds for
// its target (Cloud.Find). Steps are skipped when a ready image of the
// same target, step, name and artifact digest exists whose references
// (kernel_id, ...) are the images the plan uses for the steps they name;
// otherwise uploaded. Incomplete or failed images of the target are
// stale uploads (a register killed mid-way) and are deleted. With
// f.Replace, every other ready image of the target's steps is retired
// once the new ones are ready.
func NewPlan(cloud string, f *File, found []Image) *Plan {
	p := &Plan{Target: f.Target, Cloud: cloud}
	mine := found[:0:0]
	for _, im := range found {
		if im.Properties[PropTarget] == f.Target { // never one fgimg did not register for this target
			mine = append(mine, im)
		}
	}
	// Newest first, so that the newest of equal images is reused.
	slices.SortStableFunc(mine, func(a, b Image) int { return b.Updated.Compare(a.Updated) })
	for _, im := range mine {
		if im.State == StateIncomplete || im.State == StateFailed {
			p.Actions = append(p.Actions, Action{Op: OpDelete, Step: im.Step, Name: im.Name, Image: &im, Why: staleWhy(im)})
		}
	}
	chosen := map[string]string{} // step → image ID it uses; "" when uploaded
	for _, s := range f.Steps {
		a := Action{Op: OpUpload, Step: s.ID, Artifact: s.Artifact, Size: s.Size, Name: s.Name}
		for _, im := range mine {
			if im.State == StateReady && im.Step == s.ID && im.Digest == s.Digest && im.Name == s.Name && refsMatch(s, im, chosen) {
				a.Op, a.Image = OpSkip, &im
				break
			}
		}
		if a.Op == OpUpload {
			a.Why = uploadWhy(s, mine, chosen)
			chosen[s.ID] = ""
		} else {
			chosen[s.ID] = a.Image.ID
		}
		p.Actions = append(p.Actions, a)
	}
	if f.Replace {
		for _, im := range mine {
			if id, ok := chosen[im.Step]; ok && im.State == StateReady && im.ID != id {
				p.Actions = append(p.Actions, Action{Op: OpRetire, Step: im.Step, Name: im.Name, Image: &im})
			}
		}
	}
	return p
}

// refsMatch reports whether im's reference properties name the images
// the plan uses for the referenced steps; a referenced step that is
// being uploaded gets a new ID, so im cannot be reused.
func refsMatch(s Step, im Image, chosen map[string]string) bool {
	for prop, ref := range s.Refs {
		if id := chosen[ref]; id == "" || im.Properties[prop] != id {
			return false
		}
	}
	return true
}

func uploadWhy(s Step, mine []Image, chosen map[string]string) string {
	for _, im := range mine {
		if im.State == StateReady && im.Step == s.ID && im.Digest == s.Digest && im.Name == s.Name {
			return "the images it refers to change"
		}
	}
	for _, im := range mine {
		if im.Step == s.ID && im.State == StateReady {
			return "new digest " + short(string(s.Digest))
		}
	}
	return ""
}

func staleWhy(im Image) string {
	w := "stale upload"
	if im.State == StateFailed {
		w = "failed upload"
	}
	w += " (" + im.Status
	if !im.Updated.IsZero() {
		w += " since " + im.Updated.Local().Format(time.DateTime)
	}
	return w + ")"
}

// Uploads returns the number of uploads and their bytes.
func (p *Plan) Uploads() (n int, bytes int64) {
	for _, a := range p.Actions {
		if a.Op == OpUpload {
			n++
			bytes += a.Size
		}
	}
	return n, bytes
}

// String is the plan as register prints it, in the Terraform manner.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "target %q → %s\n", p.Target, p.Cloud)
	for _, a := range p.Actions {
		b.WriteString("  " + a.String() + "\n")
	}
	return b.String()
}

func (a Action) String() string {
	switch a.Op {
	case OpUpload:
		s := fmt.Sprintf("+ upload %s (%s) as %q", a.Artifact, bytesize.Format(a.Size), a.Name)
		if a.Why != "" {
			s += ": " + a.Why
		}
		return s
	case OpSkip:
		return fmt.Sprintf("= skip: %q is image %s with the same digest", a.Name, a.Image.ID)
	case OpDelete:
		return fmt.Sprintf("- delete %s %s %q", a.Why, a.Image.ID, a.Image.Name)
	case OpRetire:
		return fmt.Sprintf("~ retire image %s %q (%s), replaced", a.Image.ID, a.Image.Name, short(string(a.Image.Digest)))
	}
	return a.Op
}

// short abbreviates a digest for people.
func short(d string) string {
	if _, hex, ok := strings.Cut(d, ":"); ok && len(hex) > 12 {
		return hex[:12] + "…"
	}
	return d
}
