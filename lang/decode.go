package lang

import (
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/zclconf/go-cty/cty"
)

// Phase 1: decode structure against schemas, keeping expressions.

var nameRe = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

var fileSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
	{Type: "variable", LabelNames: []string{"name"}},
	{Type: "locals"},
	{Type: "image", LabelNames: []string{"name"}},
	{Type: "target", LabelNames: []string{"kind", "name"}},
}}

var variableSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "type"}, {Name: "default"}, {Name: "description"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "condition", Required: true}, {Name: "error_message", Required: true},
}}

var imageSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "parent"}, {Name: "from"},
		{Name: "description"}, {Name: "os"}, {Name: "arch"}, {Name: "tags"},
		{Name: "owner"}, {Name: "permission"}, {Name: "labels"},
		{Name: "packages"}, {Name: "run"}, {Name: "network"},
	},
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "bootstrap", LabelNames: []string{"tool"}},
		{Type: "file", LabelNames: []string{"path"}},
		{Type: "user", LabelNames: []string{"name"}},
		{Type: "service", LabelNames: []string{"name"}},
	},
}

type rawVariable struct {
	Name        string
	DeclRange   hcl.Range
	Type        cty.Type
	Default     *hcl.Attribute
	Description *hcl.Attribute
	Validations []*hcl.BodyContent
	Invalid     bool // its declaration has errors: no value is checked
}

type rawImage struct {
	Name      string
	DeclRange hcl.Range
	Dir       string
	Content   *hcl.BodyContent
}

type rawTarget struct {
	Kind, Name string
	DeclRange  hcl.Range
	Dir        string
	Content    *hcl.BodyContent
	Schema     *TargetSchema
	Vet        *hcl.BodyContent // the vet block, nil without one
	VetRange   hcl.Range
}

// vetSchema is a target's vet block.
var vetSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "block"}, {Name: "block_ids"}, {Name: "allow"}, {Name: "boot"},
}}

func (l *loader) decodeFile(f *hcl.File) {
	content, diags := f.Body.Content(fileSchema)
	l.diags = append(l.diags, diags...)
	dir := filepath.Dir(f.Body.MissingItemRange().Filename)
	for _, b := range content.Blocks {
		switch b.Type {
		case "variable":
			l.decodeVariable(b)
		case "locals":
			attrs, diags := b.Body.JustAttributes()
			l.diags = append(l.diags, diags...)
			l.locals = append(l.locals, sortedAttrs(attrs)...)
		case "image":
			c, diags := b.Body.Content(imageSchema)
			l.diags = append(l.diags, diags...)
			l.checkName("image", b.Labels[0], b.LabelRanges[0])
			l.images = append(l.images, &rawImage{Name: b.Labels[0], DeclRange: b.DefRange, Dir: dir, Content: c})
		case "target":
			l.decodeTarget(b, dir)
		}
	}
}

func (l *loader) decodeVariable(b *hcl.Block) {
	c, diags := b.Body.Content(variableSchema)
	l.diags = append(l.diags, diags...)
	l.checkName("variable", b.Labels[0], b.LabelRanges[0])
	v := &rawVariable{Name: b.Labels[0], DeclRange: b.DefRange, Type: cty.DynamicPseudoType,
		Default: c.Attributes["default"], Description: c.Attributes["description"]}
	if a, ok := c.Attributes["type"]; ok {
		ty, diags := typeexpr.TypeConstraint(a.Expr)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			v.Invalid = true
		} else {
			v.Type = ty
		}
	}
	for _, vb := range c.Blocks {
		vc, diags := vb.Body.Content(validationSchema)
		l.diags = append(l.diags, diags...)
		if !diags.HasErrors() {
			v.Validations = append(v.Validations, vc)
		}
	}
	l.variables = append(l.variables, v)
}

func (l *loader) decodeTarget(b *hcl.Block, dir string) {
	kind, name := b.Labels[0], b.Labels[1]
	ks, known := l.opts.TargetKinds[kind]
	if !known {
		l.errorf(b.LabelRanges[0].Ptr(), "Unknown target kind",
			"There is no target kind %q.%s", kind, didYouMean(kind, l.targetKinds()))
		return
	}
	schema := &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "image", Required: true}}, Blocks: []hcl.BlockHeaderSchema{{Type: "vet"}}}
	for _, a := range ks.Attributes {
		schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: a.Name})
	}
	for name := range ks.Refused {
		schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: name})
	}
	c, diags := b.Body.Content(schema)
	l.diags = append(l.diags, diags...)
	for _, name := range slices.Sorted(maps.Keys(ks.Refused)) {
		if a, ok := c.Attributes[name]; ok {
			l.errorf(a.NameRange.Ptr(), "Argument not allowed in a template", "%s", ks.Refused[name])
			delete(c.Attributes, name)
		}
	}
	l.checkName("target", name, b.LabelRanges[1])
	raw := &rawTarget{Kind: kind, Name: name, DeclRange: b.DefRange, Dir: dir, Content: c, Schema: ks}
	for i, vb := range c.Blocks {
		if i > 0 {
			l.errorf(vb.DefRange.Ptr(), "Duplicate vet block", "A target has at most one vet block; the first is on line %d.", c.Blocks[0].DefRange.Start.Line)
			continue
		}
		vc, diags := vb.Body.Content(vetSchema)
		l.diags = append(l.diags, diags...)
		raw.Vet, raw.VetRange = vc, vb.DefRange
	}
	l.targets = append(l.targets, raw)
}

// checkName checks a declared name. Image and target names become file
// names (OUT/<target>, cache records), so they are kept to characters
// and a length every file system takes.
func (l *loader) checkName(what, name string, rng hcl.Range) {
	switch {
	case len(name) > MaxNameLength:
		l.errorf(rng.Ptr(), "Name too long",
			"The %s name is %d characters long; names are at most %d, since they become file names.", what, len(name), MaxNameLength)
	case !nameRe.MatchString(name):
		l.errorf(rng.Ptr(), "Invalid "+what+" name",
			"The name %q is not valid: names start with a lowercase letter and contain only lowercase letters, digits, underscores and dashes.", name)
	}
}

// checkNames reports names declared twice.
func (l *loader) checkNames() {
	dup := func(what string, seen map[string]hcl.Range, name string, rng hcl.Range) {
		if prev, ok := seen[name]; ok {
			l.errorf(rng.Ptr(), "Duplicate "+what+" name",
				"A %s named %q was already declared at %s; names must be unique.", what, name, prev)
			return
		}
		seen[name] = rng
	}
	seen := map[string]hcl.Range{}
	for _, v := range l.variables {
		dup("variable", seen, v.Name, v.DeclRange)
	}
	seen = map[string]hcl.Range{}
	l.declared = map[string]bool{}
	for _, im := range l.images {
		dup("image", seen, im.Name, im.DeclRange)
		l.declared[im.Name] = true
	}
	seen = map[string]hcl.Range{}
	for _, t := range l.targets {
		dup("target", seen, t.Name, t.DeclRange)
	}
	seen = map[string]hcl.Range{}
	for _, a := range l.locals {
		dup("local value", seen, a.Name, a.NameRange)
	}
}

func (l *loader) targetKinds() []string {
	var kinds []string
	for k := range l.opts.TargetKinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return kinds
}

// sortedAttrs returns attributes in source order, so diagnostics come
// out in the order a reader meets them.
func sortedAttrs(attrs hcl.Attributes) []*hcl.Attribute {
	list := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		list = append(list, a)
	}
	sort.Slice(list, func(i, j int) bool {
		a, b := list[i].Range, list[j].Range
		if a.Filename != b.Filename {
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	return list
}
