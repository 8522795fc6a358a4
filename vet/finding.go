// Package vet checks an image before it is registered: accounts, SSH,
// files (world-writable, setuid, packaged files modified, secrets left
// behind), packages (unsigned repositories, known vulnerabilities from an
// offline OSV database) and, optionally, what a boot in isolation shows.
//
// Each check is a small function over the image's root filesystem,
// read-only, every path resolved inside the image (rootpath.InRoot). A
// finding has a stable ID, a severity, the path or package concerned and
// what to change in the template. A Policy says which findings block;
// Report.Blocking counts them.
package vet

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Severity ranks findings: a policy blocks from a severity up.
type Severity int

const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = []string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if s < Info || s > Critical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads a severity's name; "none" is above critical (a
// policy that blocks on no severity).
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	if strings.EqualFold(s, "none") {
		return none, nil
	}
	return 0, fmt.Errorf("%q is not a severity (info, low, medium, high, critical or none)", s)
}

// none is the threshold that no finding reaches.
const none = Critical + 1

func (s Severity) MarshalText() ([]byte, error) {
	if s == none {
		return []byte("none"), nil
	}
	return []byte(s.String()), nil
}

func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	*s = v
	return err
}

// Finding is one problem (or, at Info, one fact) vetting found.
type Finding struct {
	// ID is stable across versions: policies and approvals name it.
	ID       string   `json:"id"`
	Severity Severity `json:"severity"`
	// Path is the file concerned, absolute in the image; Package the
	// package concerned. Either may be empty.
	Path    string `json:"path,omitempty"`
	Package string `json:"package,omitempty"`
	// Detail says what is wrong; Fix what to change in the template.
	Detail string `json:"detail"`
	Fix    string `json:"fix"`
	// Blocks says the finding blocks under the report's policy.
	Blocks bool `json:"blocks"`
}

func (f Finding) String() string {
	where := f.Path
	if f.Package != "" {
		where = strings.TrimSpace(f.Package + " " + where)
	}
	return fmt.Sprintf("%s %s %s: %s", f.Severity, f.ID, where, f.Detail)
}

// The IDs of the checks, one line each in docs.
const (
	IDEmptyPassword    = "accounts.empty-password"
	IDRootPassword     = "accounts.root-password"
	IDSecondUID0       = "accounts.uid0"
	IDSystemShell      = "accounts.system-shell"
	IDSSHRootPassword  = "ssh.root-password-login"
	IDSSHPasswordAuth  = "ssh.password-auth"
	IDSSHHostKeys      = "ssh.host-keys"
	IDSSHAuthorized    = "ssh.authorized-keys"
	IDWorldWritable    = "files.world-writable"
	IDWorldWritableDir = "files.world-writable-dir"
	IDSetuidUnowned    = "files.setuid-unowned"
	IDSetuidModified   = "files.setuid-modified"
	IDModified         = "packages.modified-file"
	IDUnownedUsr       = "files.unowned-usr"
	IDPrivateKey       = "secrets.private-key"
	IDCloudCredentials = "secrets.cloud-credentials"
	IDShellHistory     = "secrets.shell-history"
	IDGitDir           = "secrets.git-dir"
	IDMachineID        = "identity.machine-id"
	IDUnsignedRepo     = "packages.unsigned-repository"
	IDVulnerable       = "packages.vulnerable"
	IDBootNoLogin      = "boot.no-login"
	IDBootListening    = "boot.listening"
	IDBootFailedUnit   = "boot.failed-unit"
	IDBootNotRun       = "boot.not-run"
)

// Report is the result of vetting one image under one policy.
type Report struct {
	// Image is the digest of the root vetted (the image's last stage,
	// or a target's last adaptation stage); Name what the user named.
	Image  string `json:"image"`
	Name   string `json:"name"`
	Policy Policy `json:"policy"`
	// VulnDB is the digest of the vulnerability database matched, empty
	// without one.
	VulnDB   string    `json:"vuln_db,omitempty"`
	Findings []Finding `json:"findings"`
	Boot     *Boot     `json:"boot,omitempty"`
	// BootNote says why the boot the policy requires did not run.
	BootNote string `json:"boot_note,omitempty"`
	// Blocking counts the findings that block; Passed is Blocking == 0.
	Blocking int  `json:"blocking"`
	Passed   bool `json:"passed"`
	// Seconds is how long the checks took (the boot apart).
	Seconds float64 `json:"seconds"`
}

// Digest is the report's identity for an approval by tools: the digest
// of its JSON.
func (r *Report) Digest() string {
	b, _ := json.Marshal(r)
	return digestBytes(b)
}

// Apply marks the findings the policy blocks and counts them.
func (r *Report) Apply(p Policy) {
	r.Policy = p
	r.Blocking = 0
	r.Findings = slices.DeleteFunc(r.Findings, func(f Finding) bool { return f.ID == IDBootNotRun })
	if p.Boot && r.Boot == nil {
		detail := "the policy requires a boot in isolation and none ran"
		if r.BootNote != "" {
			detail += ": " + r.BootNote
		}
		r.Findings = append(r.Findings, Finding{ID: IDBootNotRun, Severity: High,
			Detail: detail,
			Fix:    "vet with -boot (a disk or netboot target), or approve after review"})
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		f.Blocks = p.Blocks(*f)
		if f.Blocks {
			r.Blocking++
		}
	}
	r.Passed = r.Blocking == 0
}

// BlockingFindings returns the findings that block.
func (r *Report) BlockingFindings() []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Blocks {
			out = append(out, f)
		}
	}
	return out
}
