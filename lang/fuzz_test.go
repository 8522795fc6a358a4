package lang_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/targets"
)

// FuzzLoad feeds arbitrary bytes to the parser and evaluator as a native
// and as a JSON template: no input may panic. The seed corpus, every
// fixture of testdata, runs in the normal test suite.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.fg.*")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, filepath.Ext(s) == ".json")
	}
	f.Fuzz(func(t *testing.T, src []byte, asJSON bool) {
		dir := t.TempDir()
		name := "fuzz.fg.hcl"
		if asJSON {
			name = "fuzz.fg.json"
		}
		if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, diags := lang.Load(lang.LoadOptions{Paths: []string{dir}, Environ: []string{}, User: "fuzz", TargetKinds: targets.Schemas()})
		if cfg == nil {
			t.Fatal("Load returned no Config")
		}
		for _, d := range diags {
			if d.Summary == "" {
				t.Fatalf("diagnostic without summary: %#v", d)
			}
		}
		lang.Format(src, name)
	})
}
