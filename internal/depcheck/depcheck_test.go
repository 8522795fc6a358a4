package depcheck

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/fgimg/fgimg/"

// rules: for each package, the fgimg packages it must not import.
var rules = map[string][]string{
	"lang":           {""}, // nothing of fgimg's
	"planner":        {"cache", "stages/sandbox", "engine", "cmd"},
	"stages":         {"planner", "cache", "engine", "cmd"},
	"targets":        {"planner", "cache", "stages/sandbox", "engine", "cmd"}, // adaptations are stages.Spec values; writers run nothing in an image
	"cache":          {"lang", "planner", "stages", "targets", "engine", "cmd"},
	"internal/layer": {"lang", "planner", "stages", "targets", "cache", "cmd"},
}

func TestImportDirection(t *testing.T) {
	imports := map[string][]string{} // package dir → fgimg imports (non-test files)
	filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		dir, _ := filepath.Rel("../..", filepath.Dir(p))
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if strings.HasPrefix(path, module) {
				imports[filepath.ToSlash(dir)] = append(imports[filepath.ToSlash(dir)], strings.TrimPrefix(path, module))
			}
		}
		return nil
	})
	if len(imports) == 0 {
		t.Fatal("no imports found: wrong root?")
	}
	for pkg, deps := range imports {
		for _, dep := range deps {
			if dep == "cmd/fgimg" || strings.HasPrefix(dep, "cmd/") {
				t.Errorf("%s imports %s: nothing imports the command", pkg, dep)
			}
			for _, banned := range rules[pkg] {
				if dep == banned || banned == "" || strings.HasPrefix(dep, banned+"/") {
					t.Errorf("%s must not import %s", pkg, dep)
				}
			}
		}
	}
}
