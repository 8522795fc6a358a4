package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/cache/catalog"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/registertest"
	"github.com/opencontainers/go-digest"
)

func TestRegisterWithoutCloudTargets(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "main.fg.hcl"), small)
	// A process of its own: register isolates itself by running again.
	e := &env{t: t, dir: dir, cache: t.TempDir()}
	code, _, errw := e.run("register", "-o", t.TempDir(), dir)
	if code != exitFailed || !strings.Contains(errw, "nothing to register: no ec2, eucalyptus, nimbus, opennebula, openstack, warewulf or xcat target is selected") {
		t.Errorf("register of a configuration without cloud targets: exit %d\n%s", code, errw)
	}
	if code, _, errw := fgimg(t, "register", "-j", "0", dir); code != exitUsage {
		t.Errorf("register -j 0: exit %d\n%s", code, errw)
	}
}

func TestTemplateCommit(t *testing.T) {
	testkit.Need(t, "git")
	dir := t.TempDir()
	var errw bytes.Buffer
	if got := templateCommit(context.Background(), []string{dir}, &errw); got != nil {
		t.Errorf("outside git: %v", got)
	}
	writeFile(t, filepath.Join(dir, "main.fg.hcl"), small)
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", dir, "-c", "user.name=t", "-c", "user.email=t@t"}, args...)...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q")
	git("add", ".")
	git("commit", "-qm", "templates")
	head := git("rev-parse", "HEAD")
	if got := templateCommit(context.Background(), []string{dir}, &errw); got[register.PropTemplateCommit] != head || errw.Len() != 0 {
		t.Errorf("clean work tree: %v, %q; want %s", got, errw.String(), head)
	}
	writeFile(t, filepath.Join(dir, "main.fg.hcl"), small+"\n")
	got := templateCommit(context.Background(), []string{filepath.Join(dir, "main.fg.hcl")}, &errw)
	if got[register.PropTemplateCommit] != head+"-dirty" || !strings.Contains(errw.String(), "not committed") {
		t.Errorf("changed templates: %v, %q; want %s-dirty and a warning", got, errw.String(), head)
	}
}

// A register records into the catalog, against the OpenNebula protocol
// fake: a failed register changes nothing; each performed or skipped
// one is a use of the target's entry, whose registrations `show` and
// `images` then show.
func TestRegisterRecordsInCatalog(t *testing.T) {
	auth := registertest.OpenNebula(t, "alice", "s3cret-pw")

	e := &env{t: t, dir: t.TempDir(), cache: t.TempDir()}
	store, err := cache.Open(e.cache)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	id := digest.FromString("write stage of one")
	cat, err := catalog.Open(store)
	if err != nil {
		t.Fatal(err)
	}
	entry := &catalog.Entry{ID: id, Name: "one", Type: catalog.TypeTarget, Kind: "opennebula", Aim: catalog.Aim("opennebula"),
		Status: catalog.StatusBuilt, Created: time.Now().UTC()}
	if err := cat.Record([]*catalog.Entry{entry}, nil); err != nil {
		t.Fatal(err)
	}
	cat.Close()

	out := filepath.Join(e.dir, "out")
	f := registertest.Disk("one")
	f.Kind, f.TargetDigest, f.Steps[0].Visibility = "opennebula", id, "600"
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	registertest.Qcow2(t, src, 256<<10, 1)
	registertest.Write(t, out, f, map[string]string{"disk.qcow2": src})
	registerOnce := func() []register.Result {
		res := register.Run(context.Background(), register.Options{Out: out, Targets: []string{"one"}, Open: openCloud,
			Store: store, Retry: register.Retry{Attempts: 1}})
		if err := catalogRegister(store, out, res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	registered := func() (count float64, clouds string) {
		rows := e.images("access_count, registered where name=one")
		if len(rows) != 1 {
			t.Fatalf("images: %v", rows)
		}
		return rows[0]["access_count"].(float64), fmt.Sprint(rows[0]["registered"])
	}

	os.WriteFile(auth, []byte("alice:wrong\n"), 0o600)
	if res := registerOnce(); res[0].Err == nil {
		t.Fatal("register with a wrong password succeeded")
	}
	if n, clouds := registered(); n != 0 || clouds != "" {
		t.Errorf("after a failed register: access_count %v, registered %q; want 0 and none", n, clouds)
	}

	os.WriteFile(auth, []byte("alice:s3cret-pw\n"), 0o600)
	for i, want := range []string{"upload", "skip"} {
		res := registerOnce()
		if res[0].Err != nil || res[0].Plan.Actions[0].Op != want {
			t.Fatalf("register %d: %v %+v; want %s", i+1, res[0].Err, res[0].Plan, want)
		}
		n, clouds := registered()
		if n != float64(i+1) || !strings.HasPrefix(clouds, "opennebula") {
			t.Errorf("after register %d: access_count %v, registered %q; want %d and the opennebula cloud", i+1, n, clouds, i+1)
		}
	}
	if got := column(e.images("name where registered~^opennebula"), "name"); !slices.Equal(got, []string{"one"}) {
		t.Errorf("images where registered~^opennebula: %v", got)
	}
	code, show, errs := e.fgimg("show", "one")
	imageID := ""
	if recs, err := os.ReadFile(filepath.Join(out, "one", register.RecordsName)); err == nil {
		var r register.Records
		json.Unmarshal(recs, &r)
		if len(r.Images) == 1 {
			imageID = r.Images[0].ImageID
		}
	}
	if code != 0 || imageID == "" || !strings.Contains(show, "Registrations: 1\n  disk  image "+imageID+"  \"one\"  opennebula http") || !strings.Contains(show, "Usage: 2") || !strings.Contains(show, "register") {
		t.Errorf("show (image %q): exit %d\n%s%s", imageID, code, show, errs)
	}
}
