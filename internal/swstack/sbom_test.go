package swstack_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/package-url/packageurl-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdxlib"

	"github.com/fgimg/fgimg/internal/swstack"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

var sbomInfo = swstack.SBOMInfo{
	Image:   digest.FromString("image"),
	Root:    digest.FromString("adapted root"),
	Created: time.Unix(1700000000, 0),
}

func writeSPDX(t *testing.T, st *swstack.Stack) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := swstack.WriteSPDX(&b, st, sbomInfo); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// The SBOM of the Debian fixture is checked byte for byte, and is the
// same bytes every time.
func TestSPDXGolden(t *testing.T) {
	st, err := swstack.Read(debianRoot(t))
	if err != nil {
		t.Fatal(err)
	}
	got := writeSPDX(t, st)
	if again := writeSPDX(t, st); !bytes.Equal(got, again) {
		t.Fatal("two SBOMs of one stack differ")
	}
	golden := filepath.Join("testdata", "debian.spdx.json.golden")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("SBOM differs from %s (go test -update rewrites it):\n%s", golden, got)
	}
}

// The library's own parser reads the SBOM back, its validator accepts
// it, and each package comes back with its name, version, source and a
// package URL that parses to the same package.
func TestSPDXRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name  string
		stack *swstack.Stack
		purls []string
	}{
		{"dpkg", &swstack.Stack{Manager: "dpkg", OSID: "debian", OSVersionID: "12",
			Packages: []swstack.Package{
				{Name: "libc6", Version: "2.36-9+deb12u4", Arch: "amd64", Source: "glibc"},
				{Name: "libc6", Version: "2.36-9+deb12u4", Arch: "i386", Source: "glibc"},
				{Name: "libstdc++6", Version: "1:12.2.0-14", Arch: "amd64", Source: "gcc-12"},
			},
			Kernels: []string{"6.1.0-28-amd64"}, Services: []string{"ssh.service"}},
			[]string{
				"pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=amd64&distro=debian-12&upstream=glibc",
				"pkg:deb/debian/libc6@2.36-9%2Bdeb12u4?arch=i386&distro=debian-12&upstream=glibc",
				"pkg:deb/debian/libstdc%2B%2B6@1:12.2.0-14?arch=amd64&distro=debian-12&upstream=gcc-12",
			}},
		{"rpm", &swstack.Stack{Manager: "rpm", OSID: "fedora", OSVersionID: "40",
			Packages: []swstack.Package{{Name: "bash", Version: "2:5.2.26-3.fc40", Arch: "x86_64"}}},
			[]string{"pkg:rpm/fedora/bash@5.2.26-3.fc40?arch=x86_64&distro=fedora-40&epoch=2"}},
		{"apk", &swstack.Stack{Manager: "apk", OSID: "alpine", OSVersionID: "3.19.1",
			Packages: []swstack.Package{{Name: "busybox-binsh", Version: "1.36.1-r15", Arch: "x86_64", Source: "busybox"}}},
			[]string{"pkg:apk/alpine/busybox-binsh@1.36.1-r15?arch=x86_64&distro=alpine-3.19.1&upstream=busybox"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := writeSPDX(t, tc.stack)
			doc, err := spdxjson.Read(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("the library cannot read its SBOM: %v", err)
			}
			if err := spdxlib.ValidateDocument(doc); err != nil {
				t.Errorf("invalid: %v", err)
			}
			if doc.SPDXVersion != "SPDX-2.3" || doc.CreationInfo.Created != "2023-11-14T22:13:20Z" ||
				doc.DocumentNamespace != "urn:fgimg:spdx:sha256:"+sbomInfo.Root.Encoded() {
				t.Errorf("document: %s %s %s", doc.SPDXVersion, doc.CreationInfo.Created, doc.DocumentNamespace)
			}
			described, err := spdxlib.GetDescribedPackageIDs(doc)
			if err != nil || len(described) != 1 || described[0] != "Image" {
				t.Errorf("described: %v %v", described, err)
			}
			if len(doc.Packages) != len(tc.stack.Packages)+1 {
				t.Fatalf("%d packages, want %d and the image", len(doc.Packages), len(tc.stack.Packages))
			}
			if img := doc.Packages[0]; img.PackageVersion != string(sbomInfo.Image) ||
				len(tc.stack.Kernels) > 0 && !strings.Contains(img.PackageComment, "kernels: "+tc.stack.Kernels[0]) {
				t.Errorf("image package: %+v", img)
			}
			for i, want := range tc.stack.Packages {
				p := doc.Packages[i+1]
				src := strings.TrimPrefix(p.PackageSourceInfo, swstack.SourcePrefix)
				if p.PackageName != want.Name || p.PackageVersion != want.Version || src != want.Source {
					t.Errorf("package %d: %s %s %q, want %+v", i, p.PackageName, p.PackageVersion, src, want)
				}
				if len(p.PackageExternalReferences) != 1 || p.PackageExternalReferences[0].Locator != tc.purls[i] {
					t.Fatalf("package %s: purl %+v, want %s", want.Name, p.PackageExternalReferences, tc.purls[i])
				}
				u, err := packageurl.FromString(tc.purls[i])
				if err != nil || u.Name != want.Name || u.Qualifiers.Map()["arch"] != want.Arch {
					t.Errorf("purl %s parses to %+v, %v", tc.purls[i], u, err)
				}
			}
		})
	}
}
