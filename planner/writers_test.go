package planner

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/zclconf/go-cty/cty"

	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/stages"
	"github.com/fgimg/fgimg/targets"
)

// A target's digest must cover everything its writer reads. For every
// kind, each input a writer could see is changed on its own: the image's
// and its parent's names, the target's name, each piece of metadata and
// each of the kind's attributes (values generated from its schema). The
// target's digest must change, or the artifacts must be byte for byte
// the same: a cached artifact is then still the right one.
func TestTargetDigestsCoverWhatWritersRead(t *testing.T) {
	w := newWriterBench(t)
	for _, kind := range targets.Kinds() {
		t.Run(kind.Name(), func(t *testing.T) {
			ref := w.plan(t, kind.Name(), inputs{})
			var same []edit // the edits that leave the digest as it is
			for _, e := range inputEdits(t, kind) {
				if p := w.plan(t, kind.Name(), e.in); p.Write.Digest == ref.Write.Digest {
					same = append(same, e)
				}
			}
			if len(same) == 0 {
				return
			}
			// Writing disks takes seconds: the edits are checked all at
			// once, and one by one only when the artifacts change.
			refSums := w.write(t, ref)
			all, ok := combine(same)
			if ok {
				if p := w.plan(t, kind.Name(), all); p.Write.Digest == ref.Write.Digest && w.write(t, p) == refSums {
					return
				}
			}
			for _, e := range same {
				if sums := w.write(t, w.plan(t, kind.Name(), e.in)); sums != refSums {
					t.Errorf("%s: the digest stays %s, but the artifacts change:\n%s\nwere\n%s", e.name, Short(ref.Write.Digest), sums, refSums)
				}
			}
		})
	}
}

// inputs are the parts of the template an edit changes.
type inputs struct {
	image, parent, target string
	meta                  string // attributes of the image
	attrs                 string // attributes of the target
}

type edit struct {
	name string
	in   inputs
}

// combine makes one edit of several; ok is false when two of them
// change the same input.
func combine(edits []edit) (inputs, bool) {
	var all inputs
	set := func(dst *string, v string) bool {
		if v == "" {
			return true
		}
		if *dst != "" {
			return false
		}
		*dst = v
		return true
	}
	attrs := map[string]bool{}
	for _, e := range edits {
		if !set(&all.image, e.in.image) || !set(&all.parent, e.in.parent) || !set(&all.target, e.in.target) {
			return all, false
		}
		all.meta += e.in.meta + "\n"
		if e.in.attrs != "" {
			name, _, _ := strings.Cut(e.in.attrs, " ")
			if attrs[name] {
				return all, false
			}
			attrs[name] = true
			all.attrs += e.in.attrs + "\n"
		}
	}
	return all, true
}

// inputEdits lists one edit for every input a kind's writer could read.
func inputEdits(t *testing.T, kind targets.Kind) []edit {
	edits := []edit{
		{"image name", inputs{image: "other"}},
		{"parent name", inputs{parent: "other-base"}},
		{"target name", inputs{target: "other-target"}},
		{"description", inputs{meta: `description = "changed"`}},
		{"os", inputs{meta: `os = "debian-13"`}},
		{"tags", inputs{meta: `tags = ["changed"]`}},
		{"owner", inputs{meta: `owner = "mallory"`}},
		{"permission", inputs{meta: `permission = "public"`}},
		{"labels", inputs{meta: `labels = { changed = "yes" }`}},
	}
	for _, a := range kind.Schema().Attributes {
		for _, v := range otherValues(a) {
			edits = append(edits, edit{fmt.Sprintf("%s = %s", a.Name, v), inputs{attrs: a.Name + " = " + v}})
		}
	}
	if len(edits) == 9 && len(kind.Schema().Attributes) > 0 {
		t.Fatalf("no values generated for %s's attributes", kind.Name())
	}
	return edits
}

// otherValues are values of attribute a other than its default.
func otherValues(a lang.TargetAttribute) []string {
	var out []string
	switch {
	case len(a.Enum) > 0:
		for _, v := range a.Enum {
			if a.Default == cty.NilVal || a.Default.AsString() != v {
				out = append(out, fmt.Sprintf("%q", v))
			}
		}
	case a.Type.Equals(cty.Bool):
		out = append(out, fmt.Sprint(a.Default == cty.NilVal || a.Default.False()))
	case a.Type.Equals(cty.List(cty.String)):
		// A list its validation accepts: kernel arguments, fstab lines,
		// names.
		for _, v := range []string{"console=ttyS0", "LABEL=scratch /scratch ext4 defaults,nofail 0 2", "DEFAULT"} {
			if a.Validate == nil || a.Validate(cty.ListVal([]cty.Value{cty.StringVal(v)})) == nil {
				out = append(out, fmt.Sprintf("[%q]", v))
				break
			}
		}
	case a.Type.Equals(cty.String):
		// A value its validation accepts: a size, or any word.
		for _, v := range []string{"2GiB", "word"} {
			if a.Validate == nil || a.Validate(cty.StringVal(v)) == nil {
				out = append(out, fmt.Sprintf("%q", v))
				break
			}
		}
	case a.Type.Equals(cty.Number):
		out = append(out, "7")
	case a.Type.Equals(cty.Map(cty.String)):
		out = append(out, `{ changed = "yes" }`)
	}
	return out
}

// writerBench is an image's root file system, as a tree and as a layer,
// that every writer can make artifacts of.
type writerBench struct {
	dir   string // the configuration's directory
	root  string
	layer targets.Layer
	epoch time.Time
}

func newWriterBench(t *testing.T) *writerBench {
	if os.Geteuid() != 0 {
		t.Skip("writing disks needs root; run the tests as root")
	}
	w := &writerBench{dir: t.TempDir(), root: t.TempDir(), epoch: testkit.Epoch}
	testkit.BusyboxRootfs(t, w.root)
	for name, body := range map[string]string{
		"boot/vmlinuz-6.1.0-18-amd64":    "kernel\n" + strings.Repeat("k", 1<<20),
		"boot/initrd.img-6.1.0-18-amd64": "initrd\n" + strings.Repeat("i", 1<<20),
		"sbin/init":                      "#!/bin/sh\nexec /bin/sh\n",
		// What the cloud adaptation looks for, so that it installs
		// nothing: cloud-init, an SSH server, a network stack, and the
		// initrd's maker.
		"usr/bin/cloud-init":        "#!/bin/sh\n",
		"usr/sbin/sshd":             "#!/bin/sh\n",
		"usr/sbin/ifup":             "#!/bin/sh\n",
		"usr/sbin/update-initramfs": "#!/bin/sh\n",
		// systemctl enable as the services stage runs it offline: the link.
		"usr/bin/systemctl": "#!/bin/sh\nmkdir -p /etc/systemd/system/multi-user.target.wants && ln -sf /etc/systemd/system/$2 /etc/systemd/system/multi-user.target.wants/$2\n",
		"etc/os-release":    "ID=busybox\nVERSION_ID=1\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(w.root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if strings.HasPrefix(body, "#!") {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(w.root, name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	testkit.SetTimes(t, w.root, testkit.Epoch)
	if err := os.WriteFile(filepath.Join(w.dir, "rootfs.tar"), []byte("the origin's content"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "layer.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if err := layer.WriteTree(io.MultiWriter(f, h), w.root, layer.Options{SourceDateEpoch: &w.epoch}); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	f.Close()
	w.layer = targets.Layer{Digest: digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)), Size: st.Size(), Path: path, Kind: "bootstrap"}
	return w
}

// plan plans one target of kind with the inputs in (defaults where empty).
func (w *writerBench) plan(t *testing.T, kind string, in inputs) *Target {
	t.Helper()
	or := func(s, def string) string {
		if s == "" {
			return def
		}
		return s
	}
	attrs := in.attrs
	for _, r := range requiredAttrs[kind] {
		if name, _, _ := strings.Cut(r, " "); !strings.Contains("\n"+in.attrs, "\n"+name+" ") {
			attrs += "\n" + r
		}
	}
	src := fmt.Sprintf(`
image %[1]q {
  bootstrap "tar" { source = "rootfs.tar" }
}
image %[2]q {
  parent = image.%[1]s
  run    = ["true"]
  %[3]s
}
target %[4]q %[5]q {
  image = image.%[2]s
  %[6]s
}
`, or(in.parent, "base"), or(in.image, "img"), in.meta, kind, or(in.target, "t"), attrs)
	if err := os.WriteFile(filepath.Join(w.dir, "main.fg.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	p := mustPlan(t, load(t, []string{w.dir}), Options{})
	return p.Targets[0]
}

// requiredAttrs are the attributes a kind cannot do without, with a
// value the bench uses unless an edit sets the attribute.
var requiredAttrs = map[string][]string{
	"ec2":        {`bucket = "stage-1"`},
	"eucalyptus": {`bucket = "stage-1"`},
}

// write writes tg's artifacts from the bench's image and returns their
// names and digests, one a line.
func (w *writerBench) write(t *testing.T, tg *Target) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	// A scratch copy: the adaptation stages change the tree.
	if out, err := exec.Command("cp", "-a", w.root, root).CombinedOutput(); err != nil {
		t.Fatalf("copying the tree: %v\n%s", err, out)
	}
	for _, a := range tg.Adapt {
		if _, err := stages.Run(context.Background(), a.Spec, &stages.Env{Root: root}); err != nil {
			t.Fatalf("adapting the image for %s: %v", tg.Target.Name, err)
		}
	}
	im := tg.Image
	in := &targets.Input{
		Image:           targets.ImageInfo{Name: im.Image.Name, ID: im.ID(), Arch: im.Image.Meta.Arch},
		Layers:          []targets.Layer{w.layer},
		SourceDateEpoch: &w.epoch,
		Root:            root,
	}
	dir := t.TempDir()
	arts, err := tg.Kind.Write(context.Background(), in, tg.Write.Spec.(targets.Spec), dir)
	if err != nil {
		t.Fatalf("writing %s: %v", tg.Target.Name, err)
	}
	var lines []string
	for _, a := range arts {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(a.Path)))
		if err != nil {
			t.Fatal(err)
		}
		d, err := digest.FromReader(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("%s %s %s", a.Path, a.MediaType, d))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
