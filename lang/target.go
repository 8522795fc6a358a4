package lang

import (
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// evalTarget evaluates a target block against its kind's schema: each
// attribute converted to its type and checked (enum, Validate), defaults
// filled in, then the kind's Check over all of them.
func (l *loader) evalTarget(raw *rawTarget, e *evaluator) *Target {
	before := len(l.diags)
	s := &scope{l: l, ctx: e.bodyCtx(raw.Dir, raw.Content), attrs: raw.Content.Attributes}
	t := &Target{Kind: raw.Kind, Name: raw.Name, DeclRange: raw.DeclRange,
		Attrs: map[string]cty.Value{}, Ranges: map[string]hcl.Range{}}
	if a, ok := raw.Content.Attributes["image"]; ok {
		t.Image = l.imageRef(a, "image")
	}
	for _, as := range raw.Schema.Attributes {
		n := len(l.diags)
		v, a, ok := s.value(as.Name, as.Type, typeWant(as.Type))
		if a != nil {
			t.Ranges[as.Name] = a.Expr.Range()
		}
		if ok && !l.checkTargetValue(as, v, a) {
			ok = false
		}
		switch {
		case ok:
			t.Attrs[as.Name] = v
		case len(l.diags) > n:
			t.Attrs[as.Name] = cty.UnknownVal(as.Type) // diagnosed: no default stands in for it
		case as.Default != cty.NilVal:
			t.Attrs[as.Name] = as.Default
		default:
			t.Attrs[as.Name] = cty.NullVal(as.Type)
		}
	}
	if raw.Vet != nil {
		t.Vet = l.evalVet(raw, e)
	}
	if raw.Schema.Check != nil {
		for _, p := range raw.Schema.Check(t.Attrs) {
			rng := raw.DeclRange
			if r, ok := t.Ranges[p.Attribute]; ok {
				rng = r
			}
			l.errorf(&rng, p.Summary, "%s", p.Detail)
		}
	}
	if l.diags[before:].HasErrors() || t.Image == nil {
		return nil
	}
	return t
}

// checkTargetValue checks a set value against its attribute's enum and
// Validate, and a list for null elements; it reports what is wrong.
func (l *loader) checkTargetValue(as TargetAttribute, v cty.Value, a *hcl.Attribute) bool {
	rng := a.Expr.Range().Ptr()
	summary := "Invalid value for \"" + as.Name + "\""
	if v.CanIterateElements() {
		for it := v.ElementIterator(); it.Next(); {
			if _, e := it.Element(); e.IsNull() {
				l.errorf(rng, summary, "The %q %s must not contain null.", as.Name, collection(v.Type()))
				return false
			}
		}
	}
	if len(as.Enum) > 0 && v.Type().Equals(cty.String) {
		found := false
		for _, x := range as.Enum {
			found = found || v.AsString() == x
		}
		if !found {
			l.errorf(rng, summary, "%q is not one of %s.%s", v.AsString(), strings.Join(quoteAll(as.Enum), ", "), didYouMean(v.AsString(), as.Enum))
			return false
		}
	}
	if as.Validate != nil {
		if err := as.Validate(v); err != nil {
			l.errorf(rng, summary, "%s.", strings.TrimSuffix(err.Error(), "."))
			return false
		}
	}
	return true
}

// typeWant says what a value of type ty is, for diagnostics.
func typeWant(ty cty.Type) string {
	switch {
	case ty.Equals(cty.String):
		return "a string"
	case ty.Equals(cty.Bool):
		return "true or false"
	case ty.Equals(cty.Number):
		return "a number"
	case ty.IsListType():
		return "a list of " + strings.TrimPrefix(typeWant(ty.ElementType()), "a ") + "s"
	case ty.IsMapType():
		return "a map of " + strings.TrimPrefix(typeWant(ty.ElementType()), "a ") + "s"
	}
	return ty.FriendlyName()
}

// collection names a collection type for diagnostics: list or map.
func collection(ty cty.Type) string {
	if ty.IsMapType() || ty.IsObjectType() {
		return "map"
	}
	return "list"
}

// evalVet evaluates a target's vet block.
func (l *loader) evalVet(raw *rawTarget, e *evaluator) *Vet {
	s := &scope{l: l, ctx: e.bodyCtx(raw.Dir, raw.Vet), attrs: raw.Vet.Attributes}
	v := &Vet{DeclRange: raw.VetRange}
	if b, a, ok := s.str("block"); ok {
		if !slices.Contains(VetSeverities, b) {
			l.errorf(a.Expr.Range().Ptr(), "Invalid value for \"block\"", "%q is not one of %s.%s", b, strings.Join(quoteAll(VetSeverities), ", "), didYouMean(b, VetSeverities))
		} else {
			v.Block = b
		}
	}
	v.BlockIDs, _, _ = s.strList("block_ids")
	v.Allow, _, _ = s.strList("allow")
	if b, _, ok := s.boolean("boot"); ok {
		v.Boot = &b
	}
	return v
}
