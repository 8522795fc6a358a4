package lang

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// scope evaluates the attributes of one body and collects diagnostics.
type scope struct {
	l     *loader
	ctx   *hcl.EvalContext
	attrs hcl.Attributes
}

// value evaluates attribute name converted to ty; ok is false when the
// attribute is absent or null, or when it is invalid (diagnosed).
func (s *scope) value(name string, ty cty.Type, want string) (cty.Value, *hcl.Attribute, bool) {
	a, ok := s.attrs[name]
	if !ok {
		return cty.NilVal, nil, false
	}
	v, diags := a.Expr.Value(s.ctx)
	s.l.diags = append(s.l.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return cty.NilVal, a, false
	}
	if !v.IsWhollyKnown() {
		return cty.NilVal, a, false // an upstream error, already reported
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		s.l.errorf(a.Expr.Range().Ptr(), "Invalid value for \""+name+"\"",
			"The %q argument takes %s: %s.", name, want, err)
		return cty.NilVal, a, false
	}
	if cv.IsNull() {
		return cty.NilVal, a, false
	}
	return cv, a, true
}

func (s *scope) str(name string) (string, *hcl.Attribute, bool) {
	v, a, ok := s.value(name, cty.String, "a string")
	if !ok {
		return "", a, false
	}
	return v.AsString(), a, true
}

func (s *scope) strList(name string) ([]string, *hcl.Attribute, bool) {
	v, a, ok := s.value(name, cty.List(cty.String), "a list of strings")
	if !ok {
		return nil, a, false
	}
	out := []string{}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.IsNull() {
			s.l.errorf(a.Expr.Range().Ptr(), "Invalid value for \""+name+"\"", "The %q list must not contain null.", name)
			return nil, a, false
		}
		out = append(out, e.AsString())
	}
	return out, a, true
}

func (s *scope) strMap(name string) (map[string]string, *hcl.Attribute, bool) {
	v, a, ok := s.value(name, cty.Map(cty.String), "a map of strings")
	if !ok {
		return nil, a, false
	}
	out := map[string]string{}
	for k, e := range v.AsValueMap() {
		if e.IsNull() {
			continue
		}
		out[k] = e.AsString()
	}
	return out, a, true
}

func (s *scope) boolean(name string) (bool, *hcl.Attribute, bool) {
	v, a, ok := s.value(name, cty.Bool, "true or false")
	if !ok {
		return false, a, false
	}
	return v.True(), a, true
}

func (s *scope) integer(name string, min, max int64) (int64, *hcl.Attribute, bool) {
	v, a, ok := s.value(name, cty.Number, "a whole number")
	if !ok {
		return 0, a, false
	}
	bf := v.AsBigFloat()
	i, acc := bf.Int64()
	if acc != big.Exact || i < min || i > max {
		s.l.errorf(a.Expr.Range().Ptr(), "Invalid value for \""+name+"\"",
			"The %q argument takes a whole number from %d to %d, not %s.", name, min, max, bf.Text('g', -1))
		return 0, a, false
	}
	return i, a, true
}

// enum evaluates a string that must be one of allowed; "" if absent.
func (s *scope) enum(name string, allowed ...string) (string, bool) {
	v, a, ok := s.str(name)
	if !ok {
		return "", a == nil
	}
	for _, x := range allowed {
		if v == x {
			return v, true
		}
	}
	s.l.errorf(a.Expr.Range().Ptr(), "Invalid value for \""+name+"\"",
		"%q is not one of %s.%s", v, strings.Join(quoteAll(allowed), ", "), didYouMean(v, allowed))
	return "", false
}

func quoteAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = strconv.Quote(s)
	}
	return out
}

var sizeRe = regexp.MustCompile(`^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$`)

var sizeUnits = map[string]int64{
	"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}

// ParseSize reads a size with a binary unit, such as "512MiB" or "4GiB".
func ParseSize(s string) (int64, error) {
	m := sizeRe.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size; write a number and a binary unit, such as \"512MiB\" or \"4GiB\"", s)
	}
	unit, ok := sizeUnits[m[2]]
	if !ok {
		hint := ""
		switch strings.ToUpper(m[2]) {
		case "K", "KB":
			hint = " (did you mean KiB?)"
		case "M", "MB":
			hint = " (did you mean MiB?)"
		case "G", "GB":
			hint = " (did you mean GiB?)"
		case "T", "TB":
			hint = " (did you mean TiB?)"
		}
		return 0, fmt.Errorf("%q has unit %q; sizes use binary units B, KiB, MiB, GiB or TiB%s", s, m[2], hint)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	n := f * float64(unit)
	if n > float64(1<<60) {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n), nil
}

// ParseMode reads an octal permission string such as "0644".
func ParseMode(s string) (uint32, error) {
	if len(s) < 3 || len(s) > 4 {
		return 0, fmt.Errorf("%q is not an octal mode such as \"0644\" or \"0755\"", s)
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, fmt.Errorf("%q is not an octal mode such as \"0644\" or \"0755\"", s)
	}
	return uint32(m), nil
}
