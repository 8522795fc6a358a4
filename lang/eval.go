package lang

import (
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Phase 2: evaluate locals, images and targets in dependency order.

type evaluator struct {
	vars   cty.Value
	locals map[string]cty.Value
	images map[string]cty.Value
	l      *loader // for diagnostics and functions
}

// ctx is the context for expressions in dir that refer to what refs
// name: local and image hold only the values named there, so building a
// context costs what its expressions refer to, not what the
// configuration declares (with one shared object of every local, n
// locals cost O(n²): 20,000 of them took a minute).
func (e *evaluator) ctx(dir string, refs []hcl.Traversal) *hcl.EvalContext {
	locals := map[string]cty.Value{}
	images := map[string]cty.Value{}
	for _, tr := range refs {
		var all, some map[string]cty.Value
		switch tr.RootName() {
		case "local":
			all, some = e.locals, locals
		case "image":
			all, some = e.images, images
		default:
			continue
		}
		name := stepName(tr)
		if name == "" {
			// The whole object, as in keys(local), would cost every
			// value for each such expression.
			e.l.errorf(tr.SourceRange().Ptr(), "Invalid reference",
				"The %q object cannot be used as a whole; name one of its values, as %s.<name>.", tr.RootName(), tr.RootName())
			continue
		}
		if v, ok := all[name]; ok {
			some[name] = v
		}
	}
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": e.vars, "local": cty.ObjectVal(locals), "image": cty.ObjectVal(images)},
		Functions: e.l.functions(dir),
	}
}

// bodyCtx is the context for an image or target body: the values its
// attributes and nested blocks refer to.
func (e *evaluator) bodyCtx(dir string, c *hcl.BodyContent) *hcl.EvalContext {
	var refs []hcl.Traversal
	forEachExpr(c, func(_ string, expr hcl.Expression) {
		refs = append(refs, expr.Variables()...)
	})
	return e.ctx(dir, refs)
}

func (l *loader) evaluate(vars map[string]cty.Value) {
	e := &evaluator{
		vars:   cty.ObjectVal(vars),
		locals: map[string]cty.Value{},
		images: map[string]cty.Value{},
		l:      l,
	}
	if vars == nil {
		e.vars = cty.DynamicVal
	}
	l.evalLocals(e)
	generation := map[string]int{} // how many images an image's pedigree holds
	for _, raw := range l.orderImages() {
		gen := 1
		if deps := l.imageDeps(raw); len(deps) > 0 && deps[0].parent {
			gen += generation[deps[0].name]
		}
		generation[raw.Name] = gen
		var im *Image
		switch {
		case gen == MaxPedigree+1:
			l.errorf(raw.DeclRange.Ptr(), "Pedigree too deep",
				"Image %q would be image %d of its pedigree; a pedigree holds at most %d images.", raw.Name, gen, MaxPedigree)
		case gen <= MaxPedigree:
			im = l.evalImage(raw, e)
		}
		if im == nil {
			e.images[raw.Name] = cty.DynamicVal
			continue
		}
		l.cfg.images[im.Name] = im
		e.images[im.Name] = imageValue(im)
	}
	// Keep declaration order for images, whatever order they were
	// evaluated in.
	listed := map[*Image]bool{}
	for _, raw := range l.images {
		if im, ok := l.cfg.images[raw.Name]; ok && !listed[im] {
			listed[im] = true
			l.cfg.Images = append(l.cfg.Images, im)
		}
	}
	for _, raw := range l.targets {
		if t := l.evalTarget(raw, e); t != nil {
			l.cfg.Targets = append(l.cfg.Targets, t)
		}
	}
}

// evalLocals evaluates locals in dependency order; a cycle is an error.
func (l *loader) evalLocals(e *evaluator) {
	byName := map[string]*hcl.Attribute{}
	for _, a := range l.locals {
		if _, dup := byName[a.Name]; !dup {
			byName[a.Name] = a
		}
	}
	state := map[string]int{}   // 1 visiting, 2 done
	broken := map[string]bool{} // in a cycle or referring to images: not evaluated
	var stack []string
	var visit func(a *hcl.Attribute)
	visit = func(a *hcl.Attribute) {
		switch state[a.Name] {
		case 2:
			return
		case 1:
			l.errorf(a.NameRange.Ptr(), "Cycle in local values",
				"The local values refer to each other in a loop: %s.", cycleChain(stack, a.Name, "local."))
			for _, n := range stack {
				broken[n] = true
			}
			return
		}
		state[a.Name] = 1
		stack = append(stack, a.Name)
		for _, tr := range a.Expr.Variables() {
			switch tr.RootName() {
			case "image":
				l.errorf(tr.SourceRange().Ptr(), "Image reference in a local value",
					"Local values are evaluated before images, so they cannot refer to image attributes; move the expression into the image or target that needs it.")
				broken[a.Name] = true
			case "local":
				if name := stepName(tr); name != "" {
					if dep, ok := byName[name]; ok {
						visit(dep)
					}
				}
			}
		}
		stack = stack[:len(stack)-1]
		if state[a.Name] == 2 {
			return
		}
		state[a.Name] = 2
		if broken[a.Name] {
			e.locals[a.Name] = cty.DynamicVal
			return
		}
		val, diags := a.Expr.Value(e.ctx(dirOf(a.Range), a.Expr.Variables()))
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			val = cty.DynamicVal
		}
		e.locals[a.Name] = val
	}
	for _, a := range l.locals {
		visit(a)
	}
}

// orderImages sorts images so that every image comes after its parent
// and after the images its expressions refer to. Cycles are reported
// with their chain, and the images in them left out.
func (l *loader) orderImages() []*rawImage {
	byName := map[string]*rawImage{}
	for _, im := range l.images {
		if _, dup := byName[im.Name]; !dup {
			byName[im.Name] = im
		}
	}
	var order []*rawImage
	state := map[string]int{}
	type edge struct {
		name   string
		parent bool
	}
	var stack []edge
	var visit func(im *rawImage, via edge) bool
	visit = func(im *rawImage, via edge) bool {
		switch state[im.Name] {
		case 2:
			return true
		case 1:
			// Find where the cycle starts on the stack.
			start := len(stack) - 1
			for start > 0 && stack[start].name != im.Name {
				start--
			}
			names := []string{}
			allParents := via.parent
			for _, s := range stack[start:] {
				names = append(names, s.name)
			}
			for _, s := range stack[start+1:] {
				allParents = allParents && s.parent
			}
			chain := cycleChain(names, im.Name, "")
			rng := im.DeclRange
			// A pedigree cycle is shown at the parent attribute that closes it.
			if closing := byName[via.name]; allParents && closing != nil {
				if a, ok := closing.Content.Attributes["parent"]; ok {
					rng = a.Expr.Range()
				}
			}
			if allParents {
				l.errorf(&rng, "Pedigree cycle",
					"Each image in this chain names the next as its parent: %s. A pedigree must end in an image with its own origin (bootstrap or from).", chain)
			} else {
				l.errorf(&rng, "Reference cycle between images",
					"These images refer to each other in a loop: %s.", chain)
			}
			return false
		case 3:
			return false
		}
		state[im.Name] = 1
		stack = append(stack, edge{im.Name, via.parent})
		ok := true
		for _, dep := range l.imageDeps(im) {
			d, exists := byName[dep.name]
			if !exists {
				continue // reported when evaluating the reference
			}
			if !visit(d, edge{im.Name, dep.parent}) {
				ok = false
			}
		}
		stack = stack[:len(stack)-1]
		if !ok {
			state[im.Name] = 3
			return false
		}
		state[im.Name] = 2
		order = append(order, im)
		return true
	}
	for _, im := range l.images {
		if state[im.Name] == 0 {
			visit(im, edge{})
		}
	}
	return order
}

type imageDep struct {
	name   string
	parent bool
}

// imageDeps lists the images an image's expressions name: its parent
// first, then image.<name> references anywhere in its body.
func (l *loader) imageDeps(im *rawImage) []imageDep {
	var deps []imageDep
	if a, ok := im.Content.Attributes["parent"]; ok {
		if tr := imageTraversal(a.Expr); tr != nil && tr.RootName() == "image" {
			if name := stepName(tr); name != "" {
				deps = append(deps, imageDep{name, true})
			}
		}
	}
	forEachExpr(im.Content, func(name string, expr hcl.Expression) {
		if name == "parent" {
			return
		}
		for _, tr := range expr.Variables() {
			if tr.RootName() == "image" {
				if n := stepName(tr); n != "" {
					deps = append(deps, imageDep{n, false})
				}
			}
		}
	})
	return deps
}

// forEachExpr calls fn for every attribute of c and of its nested blocks.
func forEachExpr(c *hcl.BodyContent, fn func(name string, expr hcl.Expression)) {
	for _, a := range sortedAttrs(c.Attributes) {
		fn(a.Name, a.Expr)
	}
	for _, b := range c.Blocks {
		attrs, _ := b.Body.JustAttributes()
		for _, a := range sortedAttrs(attrs) {
			fn(a.Name, a.Expr)
		}
	}
}

// stepName returns the attribute name after a traversal's root, as in
// image.<name> or local["<name>"], or "".
func stepName(tr hcl.Traversal) string {
	if len(tr) < 2 {
		return ""
	}
	switch step := tr[1].(type) {
	case hcl.TraverseAttr:
		return step.Name
	case hcl.TraverseIndex:
		if k := step.Key; k.Type() == cty.String && k.IsKnown() && !k.IsNull() {
			return k.AsString()
		}
	}
	return ""
}

func cycleChain(stack []string, closing, prefix string) string {
	start := 0
	for i, s := range stack {
		if s == closing {
			start = i
			break
		}
	}
	parts := []string{}
	for _, s := range stack[start:] {
		parts = append(parts, prefix+s)
	}
	parts = append(parts, prefix+closing)
	return strings.Join(parts, " → ")
}

func dirOf(r hcl.Range) string {
	i := strings.LastIndexByte(r.Filename, '/')
	if i < 0 {
		return "."
	}
	return r.Filename[:i]
}
