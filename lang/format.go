package lang

import (
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns src in canonical HCL format. A file with syntax errors
// is not formatted: the diagnostics say where the errors are. The size
// and nesting limits of Load apply.
func Format(src []byte, filename string) ([]byte, hcl.Diagnostics) {
	if len(src) > MaxTemplateSize {
		return nil, hcl.Diagnostics{sizeDiag(filename, int64(len(src)), MaxTemplateSize, "a template file")}
	}
	if diags := checkNesting(src, filename, false); diags.HasErrors() {
		return nil, diags
	}
	if _, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos); diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), nil
}
