package lang_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/targets"

	"github.com/hashicorp/hcl/v2"
)

// Error markers: "# ERROR: summary" in native syntax, and a comment
// property "//": "ERROR: summary" in JSON syntax.
var (
	errorMarker     = regexp.MustCompile(`#\s*ERROR:\s*(.+?)\s*$`)
	jsonErrorMarker = regexp.MustCompile(`"//":\s*"ERROR:\s*((?:[^"\\]|\\.)*)"`)
)

func marker(line string) (string, bool) {
	if m := jsonErrorMarker.FindStringSubmatch(line); m != nil {
		s, err := strconv.Unquote(`"` + m[1] + `"`)
		return s, err == nil
	}
	if m := errorMarker.FindStringSubmatch(line); m != nil {
		return m[1], true
	}
	return "", false
}

// TestErrorFiles loads each broken template on its own and checks that
// the errors reported are exactly the ones marked with "# ERROR: <summary>"
// on the lines they must point at.
func TestErrorFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.fg.*")
	if len(files) == 0 {
		t.Fatal("no error fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for i, line := range strings.Split(string(src), "\n") {
				if summary, ok := marker(line); ok {
					want = append(want, lineSummary(i+1, summary))
				}
			}
			if len(want) == 0 {
				t.Fatalf("%s has no # ERROR: marker", f)
			}
			_, diags := lang.Load(lang.LoadOptions{Paths: []string{f}, User: "tester", Environ: []string{}, TargetKinds: targets.Schemas()})
			var got []string
			for _, d := range diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				if d.Subject == nil {
					t.Errorf("error without a source range: %s: %s", d.Summary, d.Detail)
					continue
				}
				if d.Detail == "" {
					t.Errorf("error without detail: line %d: %s", d.Subject.Start.Line, d.Summary)
				}
				got = append(got, lineSummary(d.Subject.Start.Line, d.Summary))
			}
			sort.Strings(want)
			sort.Strings(got)
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("diagnostics differ\n got:\n  %s\nwant:\n  %s\nfull:\n%s",
					strings.Join(got, "\n  "), strings.Join(want, "\n  "), diags.Error())
			}
		})
	}
}

func lineSummary(line int, summary string) string {
	return fmt.Sprintf("line %d: %s", line, summary)
}

// TestValidFiles loads every valid fixture without a diagnostic.
func TestValidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.fg.*")
	if len(files) == 0 {
		t.Fatal("no valid fixtures")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, diags := lang.Load(lang.LoadOptions{Paths: []string{f}, User: "tester", Environ: []string{}, TargetKinds: targets.Schemas()})
			if len(diags) > 0 {
				t.Fatal(diags.Error())
			}
		})
	}
}
