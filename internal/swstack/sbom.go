package swstack

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/package-url/packageurl-go"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// SPDXMediaType is an SPDX JSON document's media type (IANA).
const SPDXMediaType = "application/spdx+json"

// SBOMName is the SBOM's file name beside manifest.json.
const SBOMName = "sbom.spdx.json"

// SBOMInfo says which image an SBOM describes. Everything in it must be
// covered by the digest of the artifact the SBOM goes with, so that the
// same image gives the same bytes.
type SBOMInfo struct {
	// Image is the image's last stage digest (the image ID).
	Image digest.Digest
	// Root is the last stage digest of the root filesystem the stack was
	// read from: Image, or the top of a target's adaptation stages. It
	// names the document (its namespace).
	Root digest.Digest
	// Created is the document's creation time: SOURCE_DATE_EPOCH, or the
	// Unix epoch when there is none (never the clock).
	Created time.Time
}

// WriteSPDX writes st as an SPDX 2.3 JSON document: one package for the
// image (versionInfo its ID; its comment lists the kernels and enabled
// services, which SPDX has no element for) that CONTAINS one package per
// installed package, each with its package URL.
func WriteSPDX(w io.Writer, st *Stack, info SBOMInfo) error {
	doc := &spdx.Document{
		SPDXVersion:       spdx.Version,
		DataLicense:       spdx.DataLicense,
		SPDXIdentifier:    "DOCUMENT",
		DocumentName:      "fgimg image " + string(info.Image),
		DocumentNamespace: "urn:fgimg:spdx:" + info.Root.Algorithm().String() + ":" + info.Root.Encoded(),
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Tool", Creator: "fgimg"}},
			Created:  info.Created.UTC().Format(time.RFC3339),
		},
	}
	const imageID = common.ElementID("Image")
	name := "image"
	if st.OSID != "" {
		name = strings.TrimSuffix(st.OSID+"-"+st.OSVersionID, "-")
	}
	image := &spdx.Package{
		PackageName:             name,
		PackageSPDXIdentifier:   imageID,
		PackageVersion:          string(info.Image),
		PackageSupplier:         &common.Supplier{Supplier: "NOASSERTION"},
		PackageDownloadLocation: "NOASSERTION",
		PackageLicenseConcluded: "NOASSERTION",
		PackageLicenseDeclared:  "NOASSERTION",
		PackageCopyrightText:    "NOASSERTION",
		PrimaryPackagePurpose:   "OPERATING-SYSTEM",
		PackageComment:          imageComment(st),
	}
	doc.Packages = append(doc.Packages, image)
	doc.Relationships = append(doc.Relationships, &spdx.Relationship{
		RefA: common.MakeDocElementID("", "DOCUMENT"), RefB: common.MakeDocElementID("", string(imageID)),
		Relationship: common.TypeRelationshipDescribe,
	})
	ids := map[common.ElementID]bool{imageID: true}
	for _, p := range st.Packages {
		id := elementID(st.Manager, p, ids)
		sp := &spdx.Package{
			PackageName:             p.Name,
			PackageSPDXIdentifier:   id,
			PackageVersion:          p.Version,
			PackageSupplier:         &common.Supplier{Supplier: "NOASSERTION"},
			PackageDownloadLocation: "NOASSERTION",
			PackageLicenseConcluded: "NOASSERTION",
			PackageLicenseDeclared:  "NOASSERTION",
			PackageCopyrightText:    "NOASSERTION",
			PrimaryPackagePurpose:   "LIBRARY",
		}
		if p.Source != "" {
			sp.PackageSourceInfo = SourcePrefix + p.Source
		}
		if purl := PackageURL(st, p); purl != "" {
			sp.PackageExternalReferences = []*spdx.PackageExternalReference{{
				Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: purl,
			}}
		}
		doc.Packages = append(doc.Packages, sp)
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA: common.MakeDocElementID("", string(imageID)), RefB: common.MakeDocElementID("", string(id)),
			Relationship: common.TypeRelationshipContains,
		})
	}
	return spdxjson.Write(doc, w, spdxjson.Indent("  "), spdxjson.EscapeHTML(false))
}

// SourcePrefix begins a package's sourceInfo in the SBOM: the source
// package's name follows.
const SourcePrefix = "built from source package "

// imageComment lists what the SBOM's packages do not say.
func imageComment(st *Stack) string {
	var parts []string
	if st.Manager != "" {
		parts = append(parts, "package manager: "+st.Manager)
	}
	if len(st.Kernels) > 0 {
		parts = append(parts, "kernels: "+strings.Join(st.Kernels, ", "))
	}
	if len(st.Services) > 0 {
		parts = append(parts, "enabled services: "+strings.Join(st.Services, ", "))
	}
	return strings.Join(parts, "; ")
}

// elementID is an SPDX identifier for p, from its name and architecture
// (letters, digits, '.' and '-' only), made unique among ids.
func elementID(manager string, p Package, ids map[common.ElementID]bool) common.ElementID {
	clean := func(s string) string {
		return strings.Map(func(r rune) rune {
			if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' {
				return r
			}
			return '-'
		}, s)
	}
	base := "Package-" + clean(manager) + "-" + clean(p.Name)
	if p.Arch != "" {
		base += "-" + clean(p.Arch)
	}
	id := common.ElementID(base)
	for n := 2; ids[id]; n++ {
		id = common.ElementID(fmt.Sprintf("%s-%d", base, n))
	}
	ids[id] = true
	return id
}

// purlTypes are the package URL type of each package manager, and the
// namespace (the distribution) when the image has no os-release.
var purlTypes = map[string]struct{ typ, namespace string }{
	"dpkg": {"deb", "debian"},
	"rpm":  {"rpm", "redhat"},
	"apk":  {"apk", "alpine"},
}

// PackageURL is p's package URL (purl-spec's deb, rpm and apk types),
// such as pkg:deb/debian/bash@5.2.15-2%2Bb8?arch=amd64&distro=debian-12,
// or "" for a stack without a known package manager.
func PackageURL(st *Stack, p Package) string {
	t, ok := purlTypes[st.Manager]
	if !ok {
		return ""
	}
	typ, ns := t.typ, t.namespace
	if st.OSID != "" {
		ns = st.OSID
	}
	q := map[string]string{}
	if p.Arch != "" {
		q["arch"] = p.Arch
	}
	if st.OSID != "" && st.OSVersionID != "" {
		q["distro"] = st.OSID + "-" + st.OSVersionID
	}
	version := p.Version
	if typ == "rpm" { // the rpm type carries the epoch as a qualifier
		if e, v, ok := strings.Cut(version, ":"); ok {
			q["epoch"], version = e, v
		}
	}
	if p.Source != "" {
		q["upstream"] = p.Source
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var qs packageurl.Qualifiers
	for _, k := range keys {
		qs = append(qs, packageurl.Qualifier{Key: k, Value: q[k]})
	}
	return packageurl.NewPackageURL(typ, ns, p.Name, version, qs, "").ToString()
}
