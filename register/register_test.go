package register_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/bytesize"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/registertest"
)

// fake is a Cloud in memory, with faults on demand.
type fake struct {
	mu      sync.Mutex
	images  []register.Image
	n       int
	uploads int
	// failUploads makes that many uploads fail after creating their
	// image, with failWith.
	failUploads int
	failWith    error
	deleted     []string
	finds       int
}

func (f *fake) String() string { return "fake cloud" }

func (f *fake) Find(_ context.Context, target string) ([]register.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finds++
	var out []register.Image
	for _, im := range f.images {
		if t := im.Properties[register.PropTarget]; t != "" && (target == "" || t == target) {
			out = append(out, im)
		}
	}
	return out, nil
}

func (f *fake) Upload(_ context.Context, s register.Step, props map[string]string, path string) (register.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	im := register.Image{ID: fmt.Sprintf("im%d", f.n), Name: s.Name, State: register.StateIncomplete, Status: "saving",
		Step: props[register.PropStep], Properties: props, Updated: time.Unix(int64(f.n), 0)}
	im.Digest = s.Digest
	f.images = append(f.images, im)
	if f.failUploads > 0 {
		f.failUploads--
		return im, f.failWith
	}
	if _, err := os.Stat(path); err != nil {
		return im, err
	}
	f.uploads++
	f.images[len(f.images)-1].State, f.images[len(f.images)-1].Status = register.StateReady, "active"
	return f.images[len(f.images)-1], nil
}

func (f *fake) set(id, state string) {
	for i := range f.images {
		if f.images[i].ID == id {
			f.images[i].State = state
		}
	}
}

func (f *fake) Retire(_ context.Context, im register.Image) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set(im.ID, register.StateRetired)
	return nil
}

func (f *fake) Delete(_ context.Context, im register.Image) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, im.ID)
	for i := range f.images {
		if f.images[i].ID == im.ID {
			f.images = append(f.images[:i], f.images[i+1:]...)
			break
		}
	}
	return nil
}

func setup(t *testing.T, c *fake) (string, register.Options, *bytes.Buffer) {
	out := t.TempDir()
	var log bytes.Buffer
	return out, register.Options{
		Out: out, Log: &log, Retry: register.Retry{Attempts: 3, First: time.Millisecond},
		Open: func(context.Context, *register.File) (register.Cloud, error) { return c, nil },
	}, &log
}

func disk(t *testing.T, out, target string, seed uint64) register.File {
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	registertest.Qcow2(t, src, 256<<10, seed)
	return registertest.Write(t, out, registertest.Disk(target), map[string]string{"disk.qcow2": src})
}

func TestUnbuiltTargetIsRefusedSayingHowToBuild(t *testing.T) {
	c := &fake{}
	_, o, _ := setup(t, c)
	o.Targets = []string{"hpc"}
	res := register.Run(context.Background(), o)
	if res[0].Err == nil || !strings.Contains(res[0].Error, "fgimg build -only hpc") {
		t.Errorf("register of an unbuilt target: %v", res[0].Err)
	}
}

func TestTemporaryFaultsAreRetriedAndLeaveNothingBehind(t *testing.T) {
	c := &fake{failUploads: 2, failWith: register.Temporary(errors.New("HTTP 503: Service Unavailable"))}
	out, o, _ := setup(t, c)
	f := disk(t, out, "hpc", 1)
	o.Targets = []string{"hpc"}
	res := register.Run(context.Background(), o)
	if res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	ims, _ := c.Find(context.Background(), "hpc")
	if len(ims) != 1 || ims[0].State != register.StateReady || ims[0].Digest != f.Steps[0].Digest || len(c.deleted) != 2 {
		t.Errorf("after two 503s: images %+v, deleted %v; want one ready image and the two failed ones deleted", ims, c.deleted)
	}

	// A fault that lasts is reported with the cloud's message after the
	// attempts; one that retrying cannot help at once.
	c2 := &fake{failUploads: 10, failWith: register.Temporary(errors.New("HTTP 503: Service Unavailable"))}
	out, o, _ = setup(t, c2)
	disk(t, out, "hpc", 1)
	o.Targets = []string{"hpc"}
	res = register.Run(context.Background(), o)
	if res[0].Err == nil || !strings.Contains(res[0].Error, "HTTP 503: Service Unavailable (tried 3 times)") {
		t.Errorf("a lasting 503: %v", res[0].Err)
	}
	c3 := &fake{failUploads: 10, failWith: errors.New("HTTP 413: Request Entity Too Large")}
	out, o, _ = setup(t, c3)
	disk(t, out, "hpc", 1)
	o.Targets = []string{"hpc"}
	res = register.Run(context.Background(), o)
	if res[0].Err == nil || !strings.Contains(res[0].Error, "HTTP 413") || c3.n != 1 {
		t.Errorf("a 413: %v after %d uploads; want it reported after one", res[0].Err, c3.n)
	}
}

func TestReplaceRetiresOnlyWhatFgimgRegisteredForTheTarget(t *testing.T) {
	c := &fake{}
	out, o, log := setup(t, c)
	disk(t, out, "hpc", 1)
	o.Targets = []string{"hpc"}
	if res := register.Run(context.Background(), o); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	old := c.images[0].ID
	// Images by the same name that fgimg did not register, or registered
	// for another target.
	c.images = append(c.images,
		register.Image{ID: "theirs", Name: "hpc", State: register.StateReady, Properties: map[string]string{}},
		register.Image{ID: "other", Name: "hpc", State: register.StateReady, Step: "disk", Properties: map[string]string{register.PropTarget: "hpc2"}},
	)
	f := disk(t, out, "hpc", 2)
	o.Replace = true
	log.Reset()
	if res := register.Run(context.Background(), o); res[0].Err != nil {
		t.Fatal(res[0].Err)
	}
	want := fmt.Sprintf(`target "hpc" → fake cloud
  + upload disk.qcow2 (%s) as "hpc": new digest %s…
  ~ retire image %s "hpc" (%s…), replaced
`, bytesize.Format(f.Steps[0].Size), f.Steps[0].Digest.Encoded()[:12], old, c.images[0].Digest.Encoded()[:12])
	if got, _, _ := strings.Cut(log.String(), "target \"hpc\": "); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	for _, im := range c.images {
		if (im.ID == old) != (im.State == register.StateRetired) {
			t.Errorf("image %s (%s) is %s", im.ID, im.Name, im.State)
		}
	}
}

func TestDryRunChangesNothing(t *testing.T) {
	c := &fake{}
	out, o, log := setup(t, c)
	disk(t, out, "hpc", 1)
	c.images = append(c.images, register.Image{ID: "stuck", Name: "hpc", State: register.StateIncomplete, Status: "queued", Step: "disk",
		Properties: map[string]string{register.PropTarget: "hpc"}})
	o.Targets, o.DryRun = []string{"hpc"}, true
	res := register.Run(context.Background(), o)
	if res[0].Err != nil || c.n != 0 || len(c.deleted) != 0 {
		t.Fatalf("dry run: %v, %d uploads, deleted %v", res[0].Err, c.n, c.deleted)
	}
	if !strings.Contains(log.String(), `- delete stale upload (queued) stuck "hpc"`) || !strings.Contains(log.String(), "+ upload disk.qcow2") {
		t.Errorf("dry-run plan:\n%s", log)
	}
	if _, err := os.Stat(filepath.Join(out, "hpc", register.RecordsName)); err == nil {
		t.Error("a dry run wrote registrations.json")
	}
}

// Targets in the same cloud share one listing of fgimg's images per run,
// and each still plans over its own images only: a second run of five
// targets skips them all.
func TestOneListingPerCloudAndRun(t *testing.T) {
	c := &fake{}
	out, o, _ := setup(t, c)
	for i := range 5 {
		name := fmt.Sprintf("t%d", i)
		disk(t, out, name, uint64(i))
		o.Targets = append(o.Targets, name)
	}
	o.Jobs = 3
	for run, want := range []string{register.OpUpload, register.OpSkip} {
		c.finds = 0
		for _, r := range register.Run(context.Background(), o) {
			if r.Err != nil || len(r.Plan.Actions) != 1 || r.Plan.Actions[0].Op != want {
				t.Fatalf("run %d, target %s: %v %+v; want one %s", run+1, r.Target, r.Err, r.Plan, want)
			}
		}
		if c.finds != 1 {
			t.Errorf("run %d asked the cloud for its images %d times; want once", run+1, c.finds)
		}
	}
	if c.uploads != 5 {
		t.Errorf("%d uploads; want 5", c.uploads)
	}
}
