package targets

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/internal/rootpath"
	"github.com/fgimg/fgimg/internal/rootpath/rootpathtest"
)

// fixtureEnts is rootpathtest's fixture as layer entries.
func fixtureEnts() []ent {
	var ents []ent
	for _, e := range rootpathtest.Fixture {
		switch {
		case e.Link != "":
			ents = append(ents, symlink(e.Name, e.Link))
		case strings.HasSuffix(e.Name, "/"):
			ents = append(ents, dir(strings.TrimSuffix(e.Name, "/")))
		default:
			ents = append(ents, file(e.Name, e.Name))
		}
	}
	return ents
}

// TestSquashResolvesLikeRootfs runs the resolver cases on the tree Squash
// builds in memory: it resolves strictly beneath the root, as layer
// Apply does on disk.
func TestSquashResolvesLikeRootfs(t *testing.T) {
	s := &squasher{ctx: context.Background()}
	s.root = &node{ino: &inode{typ: '5', mode: 0o755}, children: map[string]*node{}}
	if err := s.addLayer(0, tarLayer(t, "", fixtureEnts()...)); err != nil {
		t.Fatal(err)
	}
	defer s.close()
	for _, c := range rootpathtest.Cases {
		res, err := rootpath.Walk[*node](squashTree{}, s.root, c.Path, rootpath.Beneath, rootpath.Options{FollowFinal: true})
		want := c.Beneath
		switch {
		case want.Err != nil && !errors.Is(err, want.Err):
			t.Errorf("%q: got %v, want an error wrapping %v", c.Path, err, want.Err)
		case want.Err == nil && (err != nil || res.Full() != want.Path):
			t.Errorf("%q: got %q, %v; want %q", c.Path, res.Full(), err, want.Path)
		}
	}
}

// TestSquashAgreesWithApply: a layer that writes through each case's path
// is either refused by both layer Apply and Squash, or gives both the
// same tree. Before, Squash followed `rootlink -> /` that Apply refused.
func TestSquashAgreesWithApply(t *testing.T) {
	type layerCase struct {
		name string
		ents []ent
	}
	cases := []layerCase{{"rootlink then rootlink/etc/x", []ent{symlink("rootlink", "/"), file("rootlink/etc/x", "x")}}}
	for _, c := range rootpathtest.Cases {
		if _, err := rootpath.CleanName(c.Path); err != nil || c.Path == "" {
			continue // a name no layer may have: both refuse it before resolving
		}
		cases = append(cases, layerCase{c.Path + "/new", append(fixtureEnts(), file(c.Path+"/new", "new"))})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := tarLayer(t, "", c.ents...)
			applied := t.TempDir()
			f, err := os.Open(l.Path)
			if err != nil {
				t.Fatal(err)
			}
			applyErr := layer.Apply(f, applied, layer.ApplyOptions{})
			f.Close()
			var out bytes.Buffer
			squashErr := Squash(context.Background(), &out, []Layer{l}, nil)
			switch {
			case (applyErr == nil) != (squashErr == nil):
				t.Fatalf("Apply: %v; Squash: %v", applyErr, squashErr)
			case applyErr != nil:
				return
			}
			// Names, types, contents and modes; the times of directories
			// a layer only implies differ (extraction time, epoch).
			got := describe(readTar(t, bytes.NewReader(treeBytes(t, applyAll(t, layerFile(t, "", out.Bytes()))))))
			if want := describe(readTar(t, bytes.NewReader(treeBytes(t, applied)))); got != want {
				t.Errorf("Squash gives:\n%s\nApply gives:\n%s", got, want)
			}
		})
	}
}
