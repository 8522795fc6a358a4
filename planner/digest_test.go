package planner

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/lang"
	"github.com/opencontainers/go-digest"
)

// The digest rules of LANGUAGE.md ("What changes a digest"), as
// properties: edits that cannot change an output change no digest, and
// an edit that can changes exactly the edited stage and the stages above
// it, never a sibling.

// tmpl is a configuration with a pedigree (base → hpc → hadoop), a
// sibling (web) and targets; %[1]s… are filled by variant.
const tmpl = `
variable "swappiness" {
  default = "10"
}
%[6]s
image "%[1]s" {
  %[5]s
  bootstrap "debootstrap" {
    suite   = "bookworm"
    include = ["linux-image-amd64", "systemd-sysv"]
  }
  packages = ["openssh-server", "sudo"]
  file "/etc/motd" {
    content = "base\n"
  }
  run = ["apt-get clean"]
}

image "hpc" {
  parent   = image.%[1]s
  packages = [%[2]s]
  file "/etc/hpc.conf" {
    source = "hpc.conf"
  }
  run = ["echo 'vm.swappiness=${var.swappiness}' > /etc/sysctl.d/60-hpc.conf"]
  %[3]s
}

image "hadoop" {
  parent   = image.hpc
  packages = ["openjdk-17-jre-headless"]
}

image "web" {
  parent   = image.%[1]s
  packages = ["nginx"]
  %[4]s
}

target "netboot" "nb" { image = image.hpc }
target "qcow2" "disk" { image = image.hadoop }
target "tar" "rootfs" { image = image.web }
target "oci" "oci" { image = image.web }
`

type variant struct {
	baseName, hpcPackages, hpcMeta, webMeta, baseMeta, extra string
	hpcConf                                                  string
	vars                                                     []lang.VarArg
	split                                                    bool // one file per image, attributes reordered
}

func defaults() variant {
	return variant{baseName: "base", hpcPackages: `"openmpi-bin", "hwloc"`, hpcConf: "mpi = on\n"}
}

// roleDigests plans a variant and names every stage by role: image name and
// position in its chain (base renamed is still "base"), or target name.
func roleDigests(t *testing.T, v variant) map[string]digest.Digest {
	t.Helper()
	dir := t.TempDir()
	src := fmt.Sprintf(tmpl, v.baseName, v.hpcPackages, v.hpcMeta, v.webMeta, v.baseMeta, v.extra)
	if v.split {
		// Attributes moved, each block in its own file in reverse
		// order, every line re-indented and commented.
		src = strings.Replace(src, "  run = [\"apt-get clean\"]\n}", "}", 1)
		src = strings.Replace(src, "image \""+v.baseName+"\" {\n", "image \""+v.baseName+"\" {\n  run = [\"apt-get clean\"]\n", 1)
		blocks := strings.Split(src, "\nimage ")
		for i, b := range blocks {
			if i > 0 {
				b = "image " + b
			}
			var lines []string
			for _, l := range strings.Split(b, "\n") {
				if strings.TrimSpace(l) != "" {
					l = "\t" + l + " # comment"
				}
				lines = append(lines, l)
			}
			b = strings.Join(lines, "\n")
			os.WriteFile(filepath.Join(dir, fmt.Sprintf("%02d.fg.hcl", len(blocks)-i)), []byte(b), 0o644)
		}
	} else {
		os.WriteFile(filepath.Join(dir, "main.fg.hcl"), []byte(src), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "hpc.conf"), []byte(v.hpcConf), 0o644)
	p := mustPlan(t, load(t, []string{dir}, v.vars...), Options{})
	out := map[string]digest.Digest{}
	for _, im := range p.Images {
		name := im.Image.Name
		if name == v.baseName {
			name = "base"
		}
		for i, s := range im.Stages {
			out[fmt.Sprintf("%s/%d", name, i)] = s.Digest
		}
	}
	for _, tg := range p.Targets {
		out["target/"+tg.Target.Name] = tg.Write.Digest
	}
	return out
}

// changed lists the roles whose digest differs.
func changed(a, b map[string]digest.Digest) []string {
	var out []string
	for k, d := range a {
		if b[k] != d {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// Image stages ignore form, names and metadata; a target's write covers
// what its kind writes into the artifacts: the OCI layout carries the
// image's name, pedigree and metadata, a disk's boot menu the image's
// name, the other kinds none of them.
func TestDigestsIgnoreFormMetadataAndNames(t *testing.T) {
	ref := roleDigests(t, defaults())
	written := map[string][]string{
		"renamed parent": {"target/oci"}, // the pedigree annotation
		"metadata":       {"target/oci"},
	}
	edits := map[string]func(*variant){
		"comments, formatting, files and block order": func(v *variant) { v.split = true },
		"renamed parent": func(v *variant) { v.baseName = "debian-base" },
		"package order":  func(v *variant) { v.hpcPackages = `"hwloc", "openmpi-bin", "hwloc"` },
		"metadata": func(v *variant) {
			v.baseMeta = `description = "x"
  os = "debian-12"
  tags = ["a", "b"]
  owner = "alice"
  permission = "public"
  labels = { a = "b" }`
			v.hpcMeta = `description = "y"`
			v.webMeta = `tags = ["web"]`
		},
		"an unused variable and local": func(v *variant) {
			v.extra = "variable \"unused\" {\n  default = 1\n}\nlocals {\n  x = 2\n}"
		},
	}
	for name, edit := range edits {
		t.Run(name, func(t *testing.T) {
			v := defaults()
			edit(&v)
			if c := changed(ref, roleDigests(t, v)); !slices.Equal(c, written[name]) {
				t.Errorf("changed %v, want %v", c, written[name])
			}
		})
	}
}

func TestDigestsChangeExactlyTheEditedStageAndAbove(t *testing.T) {
	ref := roleDigests(t, defaults())
	// base has 4 stages (0-3), hpc adds 4-6, hadoop adds 7, web adds 4.
	above := func(from int) []string {
		var out []string
		for i := from; i <= 6; i++ {
			out = append(out, fmt.Sprintf("hpc/%d", i), fmt.Sprintf("hadoop/%d", i))
		}
		out = append(out, "hadoop/7", "target/disk", "target/nb")
		sort.Strings(out)
		return out
	}
	cases := map[string]struct {
		edit func(*variant)
		want []string
	}{
		"a package":        {func(v *variant) { v.hpcPackages = `"openmpi-bin", "hwloc", "numactl"` }, above(4)},
		"a file's content": {func(v *variant) { v.hpcConf = "mpi = off\n" }, above(5)},
		"a variable":       {func(v *variant) { v.vars = []lang.VarArg{{Name: "swappiness", Value: "1"}} }, above(6)},
		"the run network":  {func(v *variant) { v.hpcMeta = "network = true" }, above(6)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			v := defaults()
			c.edit(&v)
			got := changed(ref, roleDigests(t, v))
			if strings.Join(got, " ") != strings.Join(c.want, " ") {
				t.Errorf("changed\n  %v\nwant\n  %v", got, c.want)
			}
		})
	}
}

func TestJSONAndNativeSyntaxGiveTheSameDigests(t *testing.T) {
	native := t.TempDir()
	os.WriteFile(filepath.Join(native, "a.fg.hcl"), []byte(`
image "base" {
  bootstrap "debootstrap" {
    suite = "bookworm"
  }
  packages = ["vim"]
  file "/etc/motd" {
    content = "hi\n"
    mode    = "0600"
  }
}
target "qcow2" "d" {
  image = image.base
  boot  = "bios"
}`), 0o644)
	js := t.TempDir()
	os.WriteFile(filepath.Join(js, "a.fg.json"), []byte(`{
  "image": {"base": {
    "bootstrap": {"debootstrap": {"suite": "bookworm"}},
    "packages": ["vim"],
    "file": {"/etc/motd": {"content": "hi\n", "mode": "0600"}}
  }},
  "target": {"qcow2": {"d": {"image": "${image.base}", "boot": "bios"}}}
}`), 0o644)
	a := mustPlan(t, load(t, []string{native}), Options{})
	b := mustPlan(t, load(t, []string{js}), Options{})
	if a.Targets[0].Write.Digest != b.Targets[0].Write.Digest {
		t.Error("the same configuration in JSON syntax must plan the same stages")
	}
}
