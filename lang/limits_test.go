package lang

import (
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
)

// TestUnsafeModesWarn: modes that are valid octal but almost surely a
// mistake load with a warning at the mode; ordinary ones load silently.
func TestUnsafeModesWarn(t *testing.T) {
	for mode, want := range map[string]string{
		"7777": "anyone may write",
		"4757": "anyone may write",
		"2666": "anyone may write",
		"1644": "sticky bit",
		"4755": "",
		"0777": "",
		"0644": "",
	} {
		dir := writeConfig(t, map[string]string{"main.fg.hcl": `image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
  file "/usr/local/bin/tool" {
    content = "x"
    mode    = "` + mode + `"
  }
}
`})
		_, diags := Load(LoadOptions{Paths: []string{dir}, User: "tester", Environ: []string{}})
		if diags.HasErrors() {
			t.Fatalf("mode %s: %s", mode, diags.Error())
		}
		if want == "" {
			if len(diags) > 0 {
				t.Errorf("mode %s: unexpected diagnostics: %s", mode, diags.Error())
			}
			continue
		}
		if len(diags) != 1 || diags[0].Severity != hcl.DiagWarning || !strings.Contains(diags[0].Detail, want) {
			t.Errorf("mode %s: want one warning saying %q, got %v", mode, want, diags)
			continue
		}
		if s := diags[0].Subject; s == nil || s.Start.Line != 5 {
			t.Errorf("mode %s: the warning does not point at the mode: %v", mode, s)
		}
	}
}
