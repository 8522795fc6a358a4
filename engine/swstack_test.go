package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	spdxjson "github.com/spdx/tools-golang/json"

	"github.com/fgimg/fgimg/planner"
)

// Every target's folder has the SBOM of the root its writer got, listed
// in manifest.json with its digest; the stack is read once per root and
// kept in the cache, where CachedStack and Engine.Stack find it.
func TestTargetsCarryTheirSBOM(t *testing.T) {
	w := newWorld(t)
	w.runner.fill = func(root string, top *planner.Stage) error {
		os.MkdirAll(filepath.Join(root, "var/lib/dpkg"), 0o755)
		status := "Package: " + top.Image.Name + "-tools\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
		return os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), []byte(status), 0o644)
	}
	p := plan(t, config)
	if err := w.build(t, p); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ target, pkg string }{{"one", "base-tools"}, {"two", "base-tools"}, {"three", "child-tools"}} {
		dir := filepath.Join(w.out, tc.target)
		b, err := os.ReadFile(filepath.Join(dir, "sbom.spdx.json"))
		if err != nil {
			t.Fatal(err)
		}
		doc, err := spdxjson.Read(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", tc.target, err)
		}
		if len(doc.Packages) != 2 || doc.Packages[1].PackageName != tc.pkg ||
			doc.Packages[1].PackageExternalReferences[0].Locator != "pkg:deb/debian/"+tc.pkg+"@1.0-1?arch=amd64" {
			t.Errorf("%s's SBOM: %s", tc.target, b)
		}
		var m Manifest
		mb, _ := os.ReadFile(filepath.Join(dir, "manifest.json"))
		json.Unmarshal(mb, &m)
		i := slices.IndexFunc(m.Artifacts, func(a ManifestFile) bool { return a.Path == "sbom.spdx.json" })
		if i < 0 || m.Artifacts[i].MediaType != "application/spdx+json" || m.Artifacts[i].Digest != digest.FromBytes(b) {
			t.Errorf("%s's manifest does not list its SBOM: %s", tc.target, mb)
		}
	}
	// One mount per target write (two writes: one and two share one);
	// the stack is recorded under each image's ID.
	if len(w.runner.mounted) != 2 {
		t.Errorf("mounted %v", w.runner.mounted)
	}
	for _, im := range p.Images {
		st, ok, err := CachedStack(w.store, im.ID())
		if err != nil || !ok || len(st.Packages) != 1 || st.Packages[0].Name != im.Image.Name+"-tools" {
			t.Errorf("the cached stack of %s: %+v %v %v", im.Image.Name, st, ok, err)
		}
		e := &Engine{Store: w.store, Runner: w.runner}
		w.runner.mounted = nil
		if st, err := e.Stack(context.Background(), im.Stages[len(im.Stages)-1]); err != nil || st.Packages[0].Name != im.Image.Name+"-tools" || len(w.runner.mounted) != 0 {
			t.Errorf("Engine.Stack of %s: %+v %v, mounted %v", im.Image.Name, st, err, w.runner.mounted)
		}
	}
	// An image whose stack is not recorded yet is mounted and read once.
	e := &Engine{Store: w.store, Runner: w.runner}
	base := p.Images[0]
	delete(w.store.records, StackKey(base.ID()))
	w.runner.mounted = nil
	for range 2 {
		if st, err := e.Stack(context.Background(), base.Stages[len(base.Stages)-1]); err != nil || st.Packages[0].Name != "base-tools" {
			t.Fatalf("Engine.Stack: %+v %v", st, err)
		}
	}
	if len(w.runner.mounted) != 1 {
		t.Errorf("mounted %v, want the image once", w.runner.mounted)
	}
}
