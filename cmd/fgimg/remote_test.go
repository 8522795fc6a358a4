package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/registrytest"
	"github.com/opencontainers/go-digest"
)

// runner is a second machine: the same templates, its own cache and
// output directory.
func (e *env) runner(t *testing.T) *env {
	return &env{t: t, dir: e.dir, cache: t.TempDir(), out: filepath.Join(t.TempDir(), "out")}
}

// Two runners share one registry with htpasswd authentication, as CI
// does: A builds and pushes; the registry's garbage collector runs; B,
// with an empty cache, builds the same templates and builds nothing,
// every stage pulled, with the same artifacts; B changes the child's
// file and builds only that stage and what stands on it. The shared
// catalog lists both targets with B's usage.
func TestSharedRepositoryTwoRunners(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	a := newEnv(t)
	ref := reg.Addr + "/fgimg"
	creds := []string{"DOCKER_CONFIG=" + reg.DockerConfig(t.TempDir(), reg.Password), "FGIMG_REMOTE=" + ref}

	code, events, stderr := a.build(append(creds, "FGIMG_RUNNER=runner-a"))
	if code != 0 {
		t.Fatalf("A: exit %d\n%s", code, stderr)
	}
	if got := names(events, "built"); len(got) != 8 {
		t.Fatalf("A built %v", got)
	}
	if got := names(events, "pushed"); len(got) != 8 || len(names(events, "not-shared")) > 0 {
		t.Fatalf("A pushed %v; not shared: %v\n%s", got, names(events, "not-shared"), stderr)
	}
	reg.GC()

	b := a.runner(t)
	code, stdout, _ := b.runEnv(creds, "plan")
	if code != 0 || !strings.Contains(stdout, "0 to build, 8 to pull, 0 cached") {
		t.Errorf("B's plan against the shared repository:\n%s", stdout)
	}
	code, events, stderr = b.build(append(creds, "FGIMG_RUNNER=runner-b"))
	if code != 0 {
		t.Fatalf("B: exit %d\n%s", code, stderr)
	}
	if got := names(events, "built"); len(got) != 0 {
		t.Errorf("B built %v; it should have pulled everything", got)
	}
	if got := names(events, "pulled"); len(got) != 8 {
		t.Errorf("B pulled %v", got)
	}
	// Nothing was unpacked: the catalog's software stacks came with the
	// stages.
	if snaps, _ := os.ReadDir(filepath.Join(b.cache, "snapshots")); len(snaps) != 0 {
		t.Errorf("B unpacked %d snapshots; the stacks should have been pulled", len(snaps))
	}
	for _, f := range []string{"child-rootfs/rootfs.tar", "child-rootfs/manifest.json", "sibling-oci/index.json"} {
		if !bytes.Equal(mustRead(t, filepath.Join(a.out, f)), mustRead(t, filepath.Join(b.out, f))) {
			t.Errorf("B's %s differs from A's", f)
		}
	}
	if code, out, errOut := b.run("cache", "verify"); code != 0 {
		t.Errorf("B's cache after pulls does not verify: %s%s", out, errOut)
	}
	// B's own catalog counts the fetch and the export of each target.
	if code, out, errOut := b.run("images", "--json", "name,access_count", "where type=target"); code != 0 || strings.Count(out, `"access_count": 2`) != 2 {
		t.Errorf("B's catalog after pulling the targets: %s%s", out, errOut)
	}

	// The shared catalog: both targets, their catalog fields, B's use.
	code, stdout, stderr = b.runEnv(creds, "images", "--json", "name,owner,kind,access_count")
	if code != 0 {
		t.Fatalf("images --remote: exit %d\n%s", code, stderr)
	}
	var rows []map[string]any
	json.Unmarshal([]byte(stdout), &rows)
	got := map[string]string{}
	for _, r := range rows {
		got[r["name"].(string)] = r["kind"].(string) + " " + jsonString(r["access_count"])
	}
	if got["child-rootfs"] != "tar 1" || got["sibling-oci"] != "oci 1" || len(got) != 2 {
		t.Errorf("images --remote: %s", stdout)
	}

	// B edits the child: only the child's changed stages are built (and
	// pushed), the rest is cached.
	b.write(strings.Replace(buildConfig, `"CHILD"`, `"CHANGED"`, 1))
	code, events, stderr = b.build(creds)
	if code != 0 {
		t.Fatalf("B after the edit: exit %d\n%s", code, stderr)
	}
	if built := strings.Join(names(events, "built"), ", "); built != "child: files, child: run, target child-rootfs" {
		t.Errorf("B after editing the child built: %s", built)
	}
	if pushed := names(events, "pushed"); len(pushed) != 3 {
		t.Errorf("B pushed %v", pushed)
	}
	// Read-only: a third runner pulls what B pushed and pushes nothing.
	c := a.runner(t)
	code, events, stderr = c.build(append(creds, "FGIMG_REMOTE_READ_ONLY=1"))
	if code != 0 || len(names(events, "built")) != 0 || len(names(events, "pushed")) != 0 {
		t.Errorf("C read-only: exit %d, built %v, pushed %v\n%s", code, names(events, "built"), names(events, "pushed"), stderr)
	}
	// C purges its target; regenerate --remote pulls it back instead of
	// building it, and verifies it.
	if code, out, errOut := c.run("purge", "-unused-for", "0s", "-keep-last", "0"); code != 0 {
		t.Fatalf("purge: %s%s", out, errOut)
	}
	code, stdout, stderr = c.runEnv(append(creds, "FGIMG_REMOTE_READ_ONLY=1"), "regenerate", "-o", filepath.Join(t.TempDir(), "regen"), "child-rootfs")
	if code != 0 || !strings.Contains(stdout, "verified") || !strings.Contains(stderr, "pulled") || strings.Contains(stderr, "built ") {
		t.Errorf("regenerate --remote of a purged target: exit %d\n%s%s", code, stdout, stderr)
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Faults: wrong credentials, a blob corrupted on the registry's disk,
// the registry gone in the middle of a push and of a pull. The build
// goes on locally every time, says what it could not share, and never
// stores a bad blob.
func TestSharedRepositoryFaults(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{Auth: true})
	a := newEnv(t)
	ref := reg.Addr + "/fgimg"
	// A fixed SOURCE_DATE_EPOCH: a stage built on either side has the
	// same bytes, so artifacts compare whatever was pulled or rebuilt.
	epoch := "SOURCE_DATE_EPOCH=1700000000"
	good := []string{"DOCKER_CONFIG=" + reg.DockerConfig(t.TempDir(), reg.Password), "FGIMG_REMOTE=" + ref, epoch}

	t.Run("wrong credentials", func(t *testing.T) {
		bad := []string{"DOCKER_CONFIG=" + reg.DockerConfig(t.TempDir(), "not-the-password"), "FGIMG_REMOTE=" + ref, epoch}
		w := a.runner(t)
		code, events, stderr := w.build(bad)
		if code != 0 || len(names(events, "built")) != 8 {
			t.Fatalf("a build with wrong credentials must still build: exit %d\n%s", code, stderr)
		}
		if !strings.Contains(stderr, "registry "+reg.Addr+" refused the credentials") {
			t.Errorf("no clear error naming the registry:\n%s", stderr)
		}
		if strings.Contains(stderr, "not-the-password") {
			t.Error("the password is in the output")
		}
		code, _, stderr = a.runner(t).runEnv(bad, "pull")
		if code == 0 || !strings.Contains(stderr, "registry "+reg.Addr+" refused the credentials") {
			t.Errorf("pull with wrong credentials: exit %d\n%s", code, stderr)
		}
	})

	t.Run("registry stops mid-push", func(t *testing.T) {
		p := reg.CutAfter(t, 64<<10)
		cut := []string{"DOCKER_CONFIG=" + reg.DockerConfigFor(t.TempDir(), p.Addr), "FGIMG_REMOTE=" + p.Addr + "/fgimg", epoch}
		code, events, stderr := a.build(cut)
		if code != 0 || len(names(events, "built")) != 8 {
			t.Fatalf("exit %d, built %v\n%s", code, names(events, "built"), stderr)
		}
		if !p.WasCut() || len(names(events, "not-shared")) == 0 || !strings.Contains(stderr, "was not shared") {
			t.Errorf("the failed pushes were not told (cut: %v):\n%s", p.WasCut(), stderr)
		}
	})

	// A complete push, for the pulls below.
	if code, out, stderr := a.runEnv(good, "push"); code != 0 || !strings.Contains(out, "0 failed") {
		t.Fatalf("push: exit %d\n%s%s", code, out, stderr)
	}

	t.Run("corrupt blob", func(t *testing.T) {
		layer := childRunLayer(t, a)
		reg.Corrupt(layer)
		defer reg.Restore(layer)
		b := a.runner(t)
		code, events, stderr := b.build(good)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		if built := strings.Join(names(events, "built"), ", "); built != "child: run" {
			t.Errorf("with the child's run layer corrupt, built %q (want it alone rebuilt)\n%s", built, stderr)
		}
		if !strings.Contains(stderr, "corrupt in the shared repository") {
			t.Errorf("the corrupt blob was not told:\n%s", stderr)
		}
		if code, out, errOut := b.run("cache", "verify"); code != 0 {
			t.Errorf("cache verify: %s%s", out, errOut)
		}
		if !bytes.Equal(mustRead(t, filepath.Join(a.out, "child-rootfs/rootfs.tar")), mustRead(t, filepath.Join(b.out, "child-rootfs/rootfs.tar"))) {
			t.Error("the rebuilt child differs")
		}
	})

	t.Run("registry stops mid-pull", func(t *testing.T) {
		p := reg.CutAfter(t, 256<<10)
		cut := []string{"DOCKER_CONFIG=" + reg.DockerConfigFor(t.TempDir(), p.Addr), "FGIMG_REMOTE=" + p.Addr + "/fgimg", epoch}
		b := a.runner(t)
		code, events, stderr := b.build(cut)
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		pulled, built := names(events, "pulled"), names(events, "built")
		if !p.WasCut() || len(built) == 0 || len(pulled)+len(built) != 8 {
			t.Errorf("cut %v: pulled %v, built %v\n%s", p.WasCut(), pulled, built, stderr)
		}
		if code, out, errOut := b.run("cache", "verify"); code != 0 {
			t.Errorf("cache verify: %s%s", out, errOut)
		}
		if !bytes.Equal(mustRead(t, filepath.Join(a.out, "child-rootfs/rootfs.tar")), mustRead(t, filepath.Join(b.out, "child-rootfs/rootfs.tar"))) {
			t.Errorf("the child differs: pulled %v, built %v", names(events, "pulled"), names(events, "built"))
		}
	})
}

// childRunLayer is the layer digest of the child's run stage, from A's
// plan.
func childRunLayer(t *testing.T, e *env) digest.Digest {
	t.Helper()
	code, stdout, stderr := e.run("plan", "--json")
	if code != 0 {
		t.Fatalf("plan: %s", stderr)
	}
	var p struct {
		Images []struct {
			Name   string
			Stages []string
		}
	}
	json.Unmarshal([]byte(stdout), &p)
	for _, im := range p.Images {
		if im.Name == "child" {
			top := im.Stages[len(im.Stages)-1]
			hex := strings.TrimPrefix(top, "sha256:")
			b, err := os.ReadFile(filepath.Join(e.cache, "records", "sha256", hex+".json"))
			if err != nil {
				t.Fatal(err)
			}
			var rec struct {
				Outputs []struct{ Digest digest.Digest }
			}
			json.Unmarshal(b, &rec)
			return rec.Outputs[0].Digest
		}
	}
	t.Fatal("no child image in the plan")
	return ""
}
