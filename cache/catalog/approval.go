package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Approval states of an image (the root a target is written from,
// keyed by its digest: a new digest needs a new approval).
const (
	// Approved by tools (vetting passed its policy, Report names the
	// report) or by review (fgimg approve: Who, When, Note).
	StatusApproved = "approved"
	StatusRejected = "rejected"
	// StatusUnapproved: vetted, with findings that block, and no one
	// approved it.
	StatusUnapproved = "unapproved"

	ByTools  = "tools"
	ByReview = "review"
)

// Approval is the catalog's record of whether an image may be
// registered. History keeps the earlier states, oldest first.
type Approval struct {
	Image  digest.Digest `json:"image"`
	Name   string        `json:"name"` // what it was vetted or approved as
	Status string        `json:"status"`
	By     string        `json:"by,omitempty"` // tools or review
	Who    string        `json:"who,omitempty"`
	When   time.Time     `json:"when"`
	Note   string        `json:"note,omitempty"`
	// Report is the digest of the vetting report the state comes from;
	// Blocking the IDs of its findings that block.
	Report   string     `json:"report,omitempty"`
	Blocking []string   `json:"blocking,omitempty"`
	History  []Approval `json:"history,omitempty"`
}

func (f *Files) approvalPath(d digest.Digest) string {
	return filepath.Join(f.dir, "approvals", d.Encoded()+".json")
}

// Approval returns image d's approval, nil when it has none.
func (f *Files) Approval(d digest.Digest) (*Approval, error) {
	if err := id(d); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(f.approvalPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	var a Approval
	if err := json.Unmarshal(b, &a); err != nil || a.Image != d {
		return nil, fmt.Errorf("catalog: %s is not the approval of %s", f.approvalPath(d), d)
	}
	return &a, nil
}

// SetApproval records a's state for its image, keeping the previous
// state in its history. A state equal to the current one (but for its
// time) is not recorded again.
func (f *Files) SetApproval(a Approval) error {
	if err := id(a.Image); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "approvals"), 0o700); err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	old, err := f.Approval(a.Image)
	if err != nil {
		return err
	}
	a.History = nil
	if old != nil {
		if old.Status == a.Status && old.By == a.By && old.Who == a.Who && old.Note == a.Note && old.Report == a.Report {
			return nil
		}
		a.History = old.History
		old.History = nil
		a.History = append(a.History, *old)
	}
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return err
	}
	if err := f.store.WriteFile(f.approvalPath(a.Image), append(b, '\n')); err != nil {
		return fmt.Errorf("catalog: writing the approval of %s: %w", a.Image, err)
	}
	return nil
}

// Vetted records what vetting image d found: approved by tools when
// its policy passed; otherwise unapproved, unless a review approved or
// rejected it (a person's word stands until the image changes, which
// is a new digest).
func (f *Files) Vetted(d digest.Digest, name string, passed bool, report string, blocking []string, when time.Time) (*Approval, error) {
	old, err := f.Approval(d)
	if err != nil {
		return nil, err
	}
	if old != nil && (old.By == ByReview || old.Status == StatusRejected) {
		return old, nil
	}
	a := Approval{Image: d, Name: name, Status: StatusUnapproved, When: when, Report: report, Blocking: blocking}
	if passed {
		a.Status, a.By, a.Blocking = StatusApproved, ByTools, nil
	}
	if err := f.SetApproval(a); err != nil {
		return nil, err
	}
	return f.Approval(d)
}

// FindApproval finds the approval an operator names: an image digest,
// a unique prefix of one (at least 6 hex digits, "sha256:" optional), or
// the name it was vetted as (the newest).
func (f *Files) FindApproval(ref string) (*Approval, error) {
	des, err := os.ReadDir(filepath.Join(f.dir, "approvals"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	var byPrefix, byName []*Approval
	for _, de := range des {
		enc, ok := strings.CutSuffix(de.Name(), ".json")
		if !ok {
			continue
		}
		a, err := f.Approval(digest.NewDigestFromEncoded(digest.SHA256, enc))
		if err != nil || a == nil {
			continue
		}
		if len(hex) >= 6 && strings.HasPrefix(enc, hex) {
			byPrefix = append(byPrefix, a)
		}
		if a.Name == ref {
			byName = append(byName, a)
		}
	}
	switch {
	case len(byPrefix) == 1:
		return byPrefix[0], nil
	case len(byPrefix) > 1:
		return nil, fmt.Errorf("%s names %d vetted images: give more of the digest", ref, len(byPrefix))
	case len(byName) > 0:
		slices.SortFunc(byName, func(a, b *Approval) int { return b.When.Compare(a.When) })
		return byName[0], nil
	}
	return nil, fmt.Errorf("no vetted image is %s: vet it first (fgimg vet NAME)", ref)
}
