package planner

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/stages"
	"github.com/fgimg/fgimg/targets"
	"github.com/opencontainers/go-digest"
)

// Short is the first 12 hex digits of a digest, as the plan shows it.
func Short(d digest.Digest) string {
	h := d.Encoded()
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

// String renders the plan as a tree of images, each with the stages it
// adds and the targets built from it, ending in a one-line summary.
// Stages shared through a pedigree appear once, under the image that
// introduces them.
func (p *Plan) String() string {
	t := p.tree()
	var b strings.Builder
	for i, r := range t.roots {
		if i > 0 {
			b.WriteString("\n")
		}
		t.writeImage(&b, r, "", "")
	}
	build, cached := p.Counts()
	pull := ""
	if n := p.Pulls(); n > 0 {
		pull = fmt.Sprintf(", %d to pull", n)
	}
	fmt.Fprintf(&b, "\nPlan: %s, %s, %s: %d to build%s, %d cached.\n",
		plural(len(p.Images), "image"), plural(len(p.Targets), "target"), plural(len(p.Stages), "stage"), build, pull, cached)
	return trimLines(b.String())
}

func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

// tree is the plan's images arranged by pedigree.
type tree struct {
	roots  []*Image
	parent map[*Image]*Image
	kids   map[*Image][]any // child *Image and *Target, in plan order
	// adaptedFor is the first target each adaptation stage is for.
	adaptedFor map[*Stage]*Target
}

func (p *Plan) tree() *tree {
	t := &tree{parent: map[*Image]*Image{}, kids: map[*Image][]any{}, adaptedFor: map[*Stage]*Target{}}
	byLang := map[*lang.Image]*Image{}
	for _, im := range p.Images {
		byLang[im.Image] = im
	}
	for _, im := range p.Images {
		if par := byLang[im.Image.Parent]; im.Image.Parent != nil && par != nil {
			t.parent[im] = par
			t.kids[par] = append(t.kids[par], im)
		} else {
			t.roots = append(t.roots, im)
		}
	}
	for _, tg := range p.Targets {
		t.kids[tg.Image] = append(t.kids[tg.Image], tg)
		for _, a := range tg.Adapt {
			if t.adaptedFor[a] == nil {
				t.adaptedFor[a] = tg
			}
		}
	}
	return t
}

// writeImage writes one image: head holds the branch drawing for its own
// line, indent the drawing that continues below it.
func (t *tree) writeImage(b *strings.Builder, im *Image, head, indent string) {
	fmt.Fprintf(b, "%simage %s  id %s\n", head, im.Image.Name, Short(im.ID()))
	kids := t.kids[im]
	own := im.Stages
	if parent := t.parent[im]; parent != nil {
		own = own[len(parent.Stages):]
	}
	bar := "   "
	if len(kids) > 0 {
		bar = "│  "
	}
	for _, s := range own {
		note := ""
		if s.Image != nil && s.Image != im.Image {
			note = "  (same as image " + s.Image.Name + ")"
		}
		fmt.Fprintf(b, "%s%s%-6s  %s  %-9s  %s%s\n", indent, bar, s.Status, Short(s.Digest), s.Kind(), Describe(s.Spec), note)
	}
	if len(own) == 0 {
		fmt.Fprintf(b, "%s%s(no stages of its own: metadata only)\n", indent, bar)
	}
	for i, k := range kids {
		branch, cont := "├─ ", "│  "
		if i == len(kids)-1 {
			branch, cont = "└─ ", "   "
		}
		switch k := k.(type) {
		case *Image:
			t.writeImage(b, k, indent+branch, indent+cont)
		case *Target:
			s := k.Write
			note := ""
			if first := s.Targets[0]; first != k {
				note = "  (same as target " + first.Target.Name + ")"
			}
			fmt.Fprintf(b, "%s%starget %s %q  %-6s  %s  %s%s\n", indent, branch, k.Target.Kind, k.Target.Name, s.Status, Short(s.Digest), Describe(s.Spec), note)
			for _, a := range k.Adapt {
				note := ""
				if first := t.adaptedFor[a]; first != k {
					note = "  (same as target " + first.Target.Name + ")"
				}
				fmt.Fprintf(b, "%s%s   adapt %-6s  %s  %s  %s%s\n", indent, cont, a.Status, Short(a.Digest), a.Kind(), Describe(a.Spec), note)
			}
		}
	}
}

// Describe is a short human summary of a stage's spec.
func Describe(spec stages.Spec) string {
	switch s := spec.(type) {
	case *stages.Bootstrap:
		if s.Tool == "tar" {
			return "tar " + Short(s.Source)
		}
		out := fmt.Sprintf("%s %s (%s)", s.Tool, s.Suite, s.Variant)
		if len(s.Include) > 0 {
			out += fmt.Sprintf(" +%s", plural(len(s.Include), "package"))
		}
		return out
	case *stages.From:
		return s.Ref
	case *stages.Packages:
		return firstFew(s.Names, 4)
	case *stages.Files:
		var paths []string
		for _, e := range s.Entries {
			paths = append(paths, e.Path)
		}
		return firstFew(paths, 3)
	case *stages.Users:
		var names []string
		for _, u := range s.Users {
			names = append(names, u.Name)
		}
		return firstFew(names, 4)
	case *stages.Services:
		var on, off []string
		for _, u := range s.Units {
			if u.Enabled {
				on = append(on, u.Name)
			} else {
				off = append(off, u.Name)
			}
		}
		var parts []string
		if len(on) > 0 {
			parts = append(parts, "enable "+firstFew(on, 3))
		}
		if len(off) > 0 {
			parts = append(parts, "disable "+firstFew(off, 3))
		}
		return strings.Join(parts, "; ")
	case *stages.Script:
		return plural(len(s.Commands), "command")
	case *stages.DiskAdapt:
		return fmt.Sprintf("/etc/fstab (/ on UUID %s…), ESP kernel hook", s.RootUUID[:min(8, len(s.RootUUID))])
	case *stages.CloudInit:
		return "cloud-init, SSH server, virtio in the initrd, no machine identity"
	case targets.Spec:
		return s.Summary()
	}
	return ""
}

func firstFew(list []string, n int) string {
	if len(list) <= n {
		return strings.Join(list, ", ")
	}
	return fmt.Sprintf("%s, +%d more", strings.Join(list[:n], ", "), len(list)-n)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// JSON form of a plan: a stable interface that tests and CI tooling read.
type jsonPlan struct {
	Images  []jsonImage  `json:"images"`
	Targets []jsonTarget `json:"targets"`
	Stages  []jsonStage  `json:"stages"`
	Summary jsonSummary  `json:"summary"`
}

type jsonImage struct {
	Name   string          `json:"name"`
	Parent *string         `json:"parent"`
	ID     digest.Digest   `json:"id"`
	Stages []digest.Digest `json:"stages"`
}

type jsonTarget struct {
	Name   string          `json:"name"`
	Kind   string          `json:"kind"`
	Image  string          `json:"image"`
	Stages []digest.Digest `json:"stages"`
}

type jsonStage struct {
	Digest digest.Digest   `json:"digest"`
	Kind   string          `json:"kind"`
	Inputs []digest.Digest `json:"inputs"`
	Status Status          `json:"status"`
}

type jsonSummary struct {
	Build  int `json:"build"`
	Pull   int `json:"pull,omitempty"`
	Cached int `json:"cached"`
}

// MarshalJSON writes the plan's stable JSON form.
func (p *Plan) MarshalJSON() ([]byte, error) {
	out := jsonPlan{Images: []jsonImage{}, Targets: []jsonTarget{}, Stages: []jsonStage{}}
	for _, im := range p.Images {
		out.Images = append(out.Images, jsonImage{Name: im.Image.Name, Parent: parentName(im.Image), ID: im.ID(), Stages: digests(im.Stages)})
	}
	for _, t := range p.Targets {
		out.Targets = append(out.Targets, jsonTarget{Name: t.Target.Name, Kind: t.Target.Kind, Image: t.Image.Image.Name, Stages: append(digests(t.Adapt), t.Write.Digest)})
	}
	for _, s := range p.Stages {
		js := jsonStage{Digest: s.Digest, Kind: s.Kind(), Inputs: []digest.Digest{}, Status: s.Status}
		if s.Input != nil {
			js.Inputs = append(js.Inputs, s.Input.Digest)
		}
		out.Stages = append(out.Stages, js)
	}
	out.Summary.Build, out.Summary.Cached = p.Counts()
	out.Summary.Pull = p.Pulls()
	return json.Marshal(out)
}

func parentName(im *lang.Image) *string {
	if im.Parent == nil {
		return nil
	}
	return &im.Parent.Name
}

func digests(list []*Stage) []digest.Digest {
	out := make([]digest.Digest, len(list))
	for i, s := range list {
		out[i] = s.Digest
	}
	return out
}
