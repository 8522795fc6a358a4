package lang

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// EnvPrefix starts the environment variables that give variables values.
const EnvPrefix = "FGIMG_VAR_"

// AutoVarsSuffix names variable files read automatically from the
// configuration directory, in alphabetical order.
const AutoVarsSuffix = ".auto.fgvars.hcl"

// varValue is a value for a variable and where it came from.
type varValue struct {
	val    cty.Value
	rng    *hcl.Range // nil for -var and the environment
	origin string     // "-var", "the environment", a file name
}

// evalVariables settles every variable's value, lowest to highest
// precedence: default, environment, auto files, then -var-file and -var
// in command-line order. It returns nil when a value is missing or bad.
func (l *loader) evalVariables(dir string) map[string]cty.Value {
	decl := map[string]*rawVariable{}
	for _, v := range l.variables {
		decl[v.Name] = v
	}
	given := map[string]varValue{}
	before := len(l.diags)

	for _, kv := range l.opts.Environ {
		name, raw, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix) {
			continue
		}
		name = strings.TrimPrefix(name, EnvPrefix)
		// Undeclared environment values are ignored: CI often sets them
		// for several configurations at once.
		if v, ok := decl[name]; ok {
			if val, ok := l.parseRawValue(v, raw, EnvPrefix+name); ok {
				given[name] = varValue{val: val, origin: "the environment"}
			}
		}
	}
	if dir != "" {
		autos, _ := filepath.Glob(filepath.Join(dir, "*"+AutoVarsSuffix))
		sort.Strings(autos)
		for _, f := range autos {
			l.readVarFile(f, false, decl, given)
		}
	}
	for _, a := range l.opts.Vars {
		if a.File != "" {
			l.readVarFile(a.File, true, decl, given)
			continue
		}
		v, ok := decl[a.Name]
		if !ok {
			l.errorf(nil, "Undeclared variable",
				"A value was given with -var for %q, but the configuration declares no such variable.%s", a.Name, didYouMean(a.Name, l.variableNames()))
			continue
		}
		if val, ok := l.parseRawValue(v, a.Value, "-var "+a.Name); ok {
			given[a.Name] = varValue{val: val, origin: "-var"}
		}
	}

	values := map[string]cty.Value{}
	for _, v := range l.variables {
		val, ok := l.settle(v, given)
		if !ok {
			continue
		}
		values[v.Name] = val
		desc := ""
		if v.Description != nil {
			d, _ := v.Description.Expr.Value(nil)
			if d.Type() == cty.String && d.IsKnown() && !d.IsNull() {
				desc = d.AsString()
			}
		}
		l.cfg.Variables = append(l.cfg.Variables, &Variable{Name: v.Name, Description: desc, Type: v.Type, Value: val, DeclRange: v.DeclRange})
	}
	if len(l.diags) > before && l.diags[before:].HasErrors() {
		return nil
	}
	return values
}

// settle picks a variable's value, converts it to its type and runs its
// validations.
func (l *loader) settle(v *rawVariable, given map[string]varValue) (cty.Value, bool) {
	if v.Invalid {
		return cty.DynamicVal, true
	}
	vv, ok := given[v.Name]
	if !ok && v.Default != nil {
		val, diags := v.Default.Expr.Value(nil)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			return cty.NilVal, false
		}
		vv = varValue{val: val, rng: v.Default.Expr.Range().Ptr(), origin: "its default"}
		ok = true
	}
	if !ok {
		l.errorf(v.DeclRange.Ptr(), "No value for required variable",
			"The variable %q has no default, so it needs a value: -var %s=…, -var-file, a *%s file or %s%s in the environment.",
			v.Name, v.Name, AutoVarsSuffix, EnvPrefix, v.Name)
		return cty.NilVal, false
	}
	val, err := convert.Convert(vv.val, v.Type)
	if err != nil {
		rng := vv.rng
		if rng == nil {
			rng = v.DeclRange.Ptr()
		}
		l.errorf(rng, "Invalid value for variable",
			"The value from %s does not suit variable %q: %s.", vv.origin, v.Name, err)
		return cty.NilVal, false
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{v.Name: val})},
		Functions: l.functions(filepath.Dir(v.DeclRange.Filename)),
	}
	for _, vc := range v.Validations {
		cond := vc.Attributes["condition"]
		res, diags := cond.Expr.Value(ctx)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			return cty.NilVal, false
		}
		if res, err := convert.Convert(res, cty.Bool); err != nil || res.IsNull() || !res.IsKnown() {
			l.errorf(cond.Expr.Range().Ptr(), "Invalid validation condition",
				"The condition of variable %q must be true or false.", v.Name)
			return cty.NilVal, false
		} else if res.False() {
			msg, diags := vc.Attributes["error_message"].Expr.Value(ctx)
			detail := "The value does not pass validation."
			if !diags.HasErrors() && msg.Type() == cty.String && !msg.IsNull() && msg.IsKnown() {
				detail = msg.AsString()
			}
			rng := vv.rng
			if rng == nil {
				rng = cond.Expr.Range().Ptr()
			}
			l.errorf(rng, "Invalid value for variable",
				"%s (variable %q, value from %s)", detail, v.Name, vv.origin)
			return cty.NilVal, false
		}
	}
	return val, true
}

// parseRawValue reads a value given as text (-var, environment): as a
// plain string for primitive types, as an HCL expression otherwise.
func (l *loader) parseRawValue(v *rawVariable, raw, origin string) (cty.Value, bool) {
	if v.Type.IsPrimitiveType() || v.Type == cty.DynamicPseudoType {
		return cty.StringVal(raw), true
	}
	diags := checkNesting([]byte(raw), origin, false)
	var expr hclsyntax.Expression
	if !diags.HasErrors() {
		expr, diags = hclsyntax.ParseExpression([]byte(raw), origin, hcl.InitialPos)
	}
	if !diags.HasErrors() {
		var val cty.Value
		val, diags = expr.Value(nil)
		if !diags.HasErrors() {
			return val, true
		}
	}
	l.errorf(nil, "Invalid value for variable",
		"The value for %q from %s is not a valid HCL expression: %s.", v.Name, origin, diags.Error())
	return cty.NilVal, false
}

// readVarFile reads name = value assignments from an HCL or JSON file;
// named says the operator named it with -var-file.
func (l *loader) readVarFile(path string, named bool, decl map[string]*rawVariable, given map[string]varValue) {
	if _, err := os.Stat(path); err != nil {
		l.errorf(nil, "Cannot read variable file", "%s.", err)
		return
	}
	f, diags := l.parseFile(path, named)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return
	}
	attrs, diags := f.Body.JustAttributes()
	l.diags = append(l.diags, diags...)
	for _, a := range sortedAttrs(attrs) {
		if _, ok := decl[a.Name]; !ok {
			l.errorf(a.NameRange.Ptr(), "Undeclared variable",
				"The file gives a value for %q, but the configuration declares no such variable.%s", a.Name, didYouMean(a.Name, l.variableNames()))
			continue
		}
		val, diags := a.Expr.Value(nil)
		l.diags = append(l.diags, diags...)
		if !diags.HasErrors() {
			given[a.Name] = varValue{val: val, rng: a.Expr.Range().Ptr(), origin: path}
		}
	}
}

func (l *loader) variableNames() []string {
	names := make([]string, len(l.variables))
	for i, v := range l.variables {
		names[i] = v.Name
	}
	return names
}

// maxSuggest bounds the candidates didYouMean compares, so that a
// configuration with thousands of names and as many errors stays linear.
const maxSuggest = 1000

// didYouMean returns " Did you mean "x"?" for the nearest candidate, or "".
func didYouMean(name string, candidates []string) string {
	if len(candidates) > maxSuggest {
		return ""
	}
	best, bestDist := "", 3
	for _, c := range candidates {
		if d := levenshtein.Distance(name, c, nil); d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" Did you mean %q?", best)
}
