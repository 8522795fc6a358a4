package planner

import (
	"path"

	"github.com/fgimg/fgimg/lang"
	"github.com/hashicorp/hcl/v2"
)

// Select picks the images and targets to plan. With no only patterns
// everything is picked; otherwise the images and targets whose names
// match one of them. Names matching an except pattern are then dropped.
// A dropped image's stages are still planned when a picked image or
// target needs them. Patterns are globs (path.Match); a pattern that
// matches no name is an error.
func Select(cfg *lang.Config, only, except []string) ([]*lang.Image, []*lang.Target, hcl.Diagnostics) {
	var names []string
	for _, im := range cfg.Images {
		names = append(names, im.Name)
	}
	for _, t := range cfg.Targets {
		names = append(names, t.Name)
	}
	var diags hcl.Diagnostics
	match := func(flag string, patterns []string) map[string]bool {
		set := map[string]bool{}
		for _, p := range patterns {
			found := false
			for _, n := range names {
				ok, err := path.Match(p, n)
				if err != nil {
					diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid pattern",
						Detail: "The " + flag + " pattern " + quote(p) + " is not a valid glob: " + err.Error() + "."})
					break
				}
				if ok {
					set[n], found = true, true
				}
			}
			if !found && !diags.HasErrors() {
				diags = append(diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Nothing matches " + flag + " " + quote(p),
					Detail: "No image or target is named " + quote(p) + "; the names are " + listNames(names) + "."})
			}
		}
		return set
	}
	onlySet, exceptSet := match("-only", only), match("-except", except)
	picked := func(name string) bool {
		return (len(only) == 0 || onlySet[name]) && !exceptSet[name]
	}
	var images []*lang.Image
	var targets []*lang.Target
	for _, im := range cfg.Images {
		if picked(im.Name) {
			images = append(images, im)
		}
	}
	for _, t := range cfg.Targets {
		if picked(t.Name) {
			targets = append(targets, t)
		}
	}
	return images, targets, diags
}

func quote(s string) string { return "\"" + s + "\"" }

func listNames(names []string) string {
	out := ""
	for i, n := range names {
		if i > 0 {
			out += ", "
		}
		out += n
	}
	if out == "" {
		return "none"
	}
	return out
}
