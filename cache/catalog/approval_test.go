package catalog

import (
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/cache"
)

// Vetting records approval by tools or "unapproved"; a review's word
// (approved or rejected) stands over later vetting of the same digest;
// each change keeps the one before in the history; an operator finds an
// image by a digest prefix or the name it was vetted as.
func TestApprovals(t *testing.T) {
	store, err := cache.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	f, err := NewFiles(store)
	if err != nil {
		t.Fatal(err)
	}
	img := digest.FromString("an image")
	other := digest.FromString("its next build")
	now := time.Now().UTC()
	if a, _ := f.Approval(img); a != nil {
		t.Fatalf("an image never vetted: %+v", a)
	}
	a, err := f.Vetted(img, "hpc", false, "sha256:r1", []string{"ssh.host-keys"}, now)
	if err != nil || a.Status != StatusUnapproved || a.Blocking[0] != "ssh.host-keys" {
		t.Fatalf("vetted with findings that block: %+v %v", a, err)
	}
	if a, _ = f.Vetted(img, "hpc", false, "sha256:r1", []string{"ssh.host-keys"}, now.Add(time.Minute)); len(a.History) != 0 {
		t.Errorf("the same outcome again was recorded again: %+v", a.History)
	}
	found, err := f.FindApproval(img.Encoded()[:8])
	if err != nil || found.Image != img {
		t.Fatalf("by prefix: %+v %v", found, err)
	}
	if err := f.SetApproval(Approval{Image: img, Name: "hpc", Status: StatusApproved, By: ByReview, Who: "alice", Note: "dummy keys", When: now}); err != nil {
		t.Fatal(err)
	}
	if a, _ = f.Vetted(img, "hpc", false, "sha256:r2", nil, now); a.By != ByReview || a.Who != "alice" || len(a.History) != 1 {
		t.Errorf("vetting again replaced the review: %+v", a)
	}
	if _, err := f.Vetted(other, "hpc", true, "sha256:r3", nil, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a, _ = f.Approval(other); a.Status != StatusApproved || a.By != ByTools || a.Report != "sha256:r3" {
		t.Errorf("a new digest that passes: %+v", a)
	}
	if found, _ = f.FindApproval("hpc"); found.Image != other {
		t.Errorf("by name: %s, want the newest, %s", found.Image, other)
	}
	if _, err := f.FindApproval("nothing"); err == nil || !strings.Contains(err.Error(), "vet it first") {
		t.Errorf("an unknown name: %v", err)
	}
}
