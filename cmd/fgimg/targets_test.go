package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Two targets of one kind and spec on one image share one write, and
// each is still written to OUT/<target>/ with its own manifest.
func TestTwoTargetsOfOneSpecAreBothWritten(t *testing.T) {
	e := newEnv(t)
	e.write(buildConfig + `
target "oci" "first" {
  image = image.base
}
target "oci" "second" {
  image = image.base
}
`)
	code, events, stderr := e.build(nil, "-only", "first,second")
	if code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	if got := names(events, "exported"); strings.Join(got, ", ") != "target first, target second" {
		t.Errorf("exported %v, want both targets", got)
	}
	var digests []string
	for _, name := range []string{"first", "second"} {
		var m struct {
			Target string
			Stages []string
		}
		b, err := os.ReadFile(filepath.Join(e.out, name, "manifest.json"))
		if err != nil {
			t.Fatalf("target %s was not written: %v", name, err)
		}
		if err := json.Unmarshal(b, &m); err != nil || m.Target != name {
			t.Errorf("%s/manifest.json names target %q (%v)", name, m.Target, err)
		}
		digests = append(digests, m.Stages[len(m.Stages)-1])
		if _, err := os.Stat(filepath.Join(e.out, name, "index.json")); err != nil {
			t.Errorf("target %s has no OCI layout: %v", name, err)
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("one kind, spec and image must be one write: %v", digests)
	}
	plan := runOK(t, e, "plan", "-only", "first,second", e.dir)
	if !strings.Contains(plan, `target oci "first"`) || !strings.Contains(plan, `target oci "second"`) || !strings.Contains(plan, "(same as target first)") {
		t.Errorf("plan must show both targets:\n%s", plan)
	}
}

// Editing the metadata an OCI layout carries rewrites the layout (and
// rebuilds no image stage); editing what a kind does not write changes
// nothing.
func TestMetadataEditRewritesTheArtifactsThatCarryIt(t *testing.T) {
	e := newEnv(t)
	config := func(desc string) string {
		return strings.Replace(buildConfig, `image "sibling" {`, `image "sibling" {
  description = "`+desc+`"`, 1)
	}
	e.write(config("one"))
	if code, _, stderr := e.build(nil); code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	e.write(config("two"))
	code, events, stderr := e.build(nil)
	if code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	if got := names(events, "built"); !slices.Equal(got, []string{"target sibling-oci"}) {
		t.Errorf("after editing the description built %v, want only the OCI layout", got)
	}
	var index struct{ Manifests []struct{ Digest string } }
	b, _ := os.ReadFile(filepath.Join(e.out, "sibling-oci", "index.json"))
	if err := json.Unmarshal(b, &index); err != nil || len(index.Manifests) != 1 {
		t.Fatalf("index.json: %v\n%s", err, b)
	}
	b, _ = os.ReadFile(filepath.Join(e.out, "sibling-oci", "blobs", "sha256", strings.TrimPrefix(index.Manifests[0].Digest, "sha256:")))
	var manifest struct{ Annotations map[string]string }
	if err := json.Unmarshal(b, &manifest); err != nil {
		t.Fatal(err)
	}
	if d := manifest.Annotations["org.opencontainers.image.description"]; d != "two" {
		t.Errorf("the layout's description is %q, want the edited one", d)
	}
}

// runOK runs fgimg and returns its stdout; it fails the test on an error.
func runOK(t *testing.T, e *env, args ...string) string {
	t.Helper()
	b, err := e.command(t.Context(), nil, args...).Output()
	if err != nil {
		t.Fatalf("fgimg %v: %v\n%s", args, err, b)
	}
	return string(b)
}
