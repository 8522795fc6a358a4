package lang

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// testKinds is a target kind of each shape lang must handle: lang knows
// no kind of its own, so its tests bring theirs.
var testKinds = map[string]*TargetSchema{
	"box": {
		Attributes: []TargetAttribute{
			{Name: "colour", Type: cty.String, Default: cty.StringVal("red"), Enum: []string{"red", "blue"}},
			{Name: "count", Type: cty.Number, Validate: func(v cty.Value) error {
				if v.LessThan(cty.NumberIntVal(1)).True() {
					return errors.New("count must be at least 1")
				}
				return nil
			}},
			{Name: "flags", Type: cty.List(cty.String)},
			{Name: "big", Type: cty.Bool, Default: cty.False},
			{Name: "tags", Type: cty.Map(cty.String)},
		},
		Refused: map[string]string{"password": "Keep it out of templates."},
		Check: func(v map[string]cty.Value) []TargetProblem {
			if c := v["count"]; !c.IsNull() && c.IsKnown() && c.GreaterThan(cty.NumberIntVal(10)).True() && v["big"].False() {
				return []TargetProblem{{Attribute: "count", Summary: "Too many", Detail: "Set big = true for more than 10."}}
			}
			return nil
		},
	},
}

func loadKinds(t *testing.T, src string) (*Config, hcl.Diagnostics) {
	t.Helper()
	dir := writeConfig(t, map[string]string{"main.fg.hcl": `image "i" {
  bootstrap "debootstrap" { suite = "bookworm" }
}
` + src})
	return Load(LoadOptions{Paths: []string{dir}, Environ: []string{}, TargetKinds: testKinds})
}

func TestTargetSchemaValuesAndDefaults(t *testing.T) {
	cfg, diags := loadKinds(t, `target "box" "a" { image = image.i }
target "box" "b" {
  image  = image.i
  colour = "blue"
  count  = 20
  big    = true
  flags  = ["x", "y"]
  tags   = { a = "1", "b.c" = 2 }
}`)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	a, b := cfg.Targets[0], cfg.Targets[1]
	if a.Str("colour") != "red" || !a.Attrs["count"].IsNull() || a.Strs("flags") != nil || a.Bool("big") {
		t.Errorf("defaults: %#v", a.Attrs)
	}
	if b.Str("colour") != "blue" || b.Attrs["count"].AsBigFloat().String() != "20" || strings.Join(b.Strs("flags"), ",") != "x,y" || !b.Bool("big") {
		t.Errorf("values: %#v", b.Attrs)
	}
	if a.StrMap("tags") != nil || fmt.Sprint(b.StrMap("tags")) != "map[a:1 b.c:2]" {
		t.Errorf("tags: %v, %v", a.StrMap("tags"), b.StrMap("tags"))
	}
	if r, ok := b.Ranges["colour"]; !ok || r.Start.Line != 7 {
		t.Errorf("range of colour: %v", r)
	}
	if a.Image != cfg.Image("i") {
		t.Error("image reference")
	}
}

func TestTargetSchemaDiagnostics(t *testing.T) {
	for _, c := range []struct{ src, summary, detail string }{
		{`target "bag" "x" { image = image.i }`, "Unknown target kind", `Did you mean "box"?`},
		{"target \"box\" \"x\" {\n  image = image.i\n  colour = \"green\"\n}", `Invalid value for "colour"`, `"green" is not one of "red", "blue".`},
		{"target \"box\" \"x\" {\n  image = image.i\n  count = 0\n}", `Invalid value for "count"`, "count must be at least 1."},
		{"target \"box\" \"x\" {\n  image = image.i\n  count = 11\n}", "Too many", "Set big = true for more than 10."},
		{"target \"box\" \"x\" {\n  image = image.i\n  flags = [\"a\", null]\n}", `Invalid value for "flags"`, "must not contain null"},
		{"target \"box\" \"x\" {\n  image = image.i\n  size = 1\n}", "Unsupported argument", ""},
		{"target \"box\" \"x\" {\n  image = image.i\n  password = \"pw\"\n}", "Argument not allowed in a template", "Keep it out of templates."},
		{"target \"box\" \"x\" {\n  image = image.i\n  tags = [\"a\"]\n}", `Invalid value for "tags"`, "takes a map of strings"},
		{"target \"box\" \"x\" {\n  image = image.i\n  tags = { a = null }\n}", `Invalid value for "tags"`, `The "tags" map must not contain null`},
	} {
		_, diags := loadKinds(t, c.src)
		if len(diags) != 1 || diags[0].Summary != c.summary || !strings.Contains(diags[0].Detail, c.detail) {
			t.Errorf("%s:\n got %v\nwant %s: %s", c.src, diags, c.summary, c.detail)
			continue
		}
		// The diagnostic points at the attribute (the third line of a
		// target that sets one), or at the kind's label (line 4).
		want := 4
		if strings.Count(c.src, "\n") == 3 {
			want = 6
		}
		if got := diags[0].Subject.Start.Line; got != want {
			t.Errorf("%s: diagnostic on line %d, want %d", c.src, got, want)
		}
	}
}

// A target's vet block: every kind takes it, its values are evaluated
// (variables and locals too), a wrong severity or a second block is a
// diagnostic on its line.
func TestTargetVetBlock(t *testing.T) {
	cfg, diags := loadKinds(t, `locals { strict = "medium" }
target "box" "a" { image = image.i }
target "box" "b" {
  image = image.i
  vet {
    block     = local.strict
    block_ids = ["secrets.git-dir"]
    allow     = ["files.world-writable:/srv/scratch"]
    boot      = true
  }
}`)
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if v := cfg.Targets[0].Vet; v != nil {
		t.Errorf("no vet block: %+v", v)
	}
	v := cfg.Targets[1].Vet
	if v == nil || v.Block != "medium" || strings.Join(v.BlockIDs, ",") != "secrets.git-dir" ||
		strings.Join(v.Allow, ",") != "files.world-writable:/srv/scratch" || v.Boot == nil || !*v.Boot || v.DeclRange.Start.Line != 8 {
		t.Errorf("vet block: %+v", v)
	}

	_, diags = loadKinds(t, `target "box" "a" {
  image = image.i
  vet {
    block = "hihg"
  }
  vet {}
}`)
	var all []string
	for _, d := range diags {
		all = append(all, fmt.Sprintf("%s:%d: %s; %s", filepath.Base(d.Subject.Filename), d.Subject.Start.Line, d.Summary, d.Detail))
	}
	got := strings.Join(all, "\n")
	for _, want := range []string{`main.fg.hcl:7: Invalid value for "block"; "hihg" is not one of`, `Did you mean "high"?`, "main.fg.hcl:9: Duplicate vet block"} {
		if !strings.Contains(got, want) {
			t.Errorf("diagnostics %q lack %q", got, want)
		}
	}
}
