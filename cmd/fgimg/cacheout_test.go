package main

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// smallFS mounts a tmpfs of size bytes on a fresh directory and returns it.
func smallFS(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Fatalf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// A stage that fills the cache's filesystem fails; the log printed as its
// "Full log" must exist after fgimg exits and hold the stage's output.
func TestFailedStageLogKeptWhenCacheIsFull(t *testing.T) {
	e := newEnv(t)
	e.cache = filepath.Join(smallFS(t, "24m"), "cache")
	e.write(buildConfig + `
image "filler" {
  parent = image.base
  run    = ["echo preparing", "cat /dev/zero > /fill", "echo never"]
}
target "tar" "filler-rootfs" { image = image.filler }
`)
	code, events, stderr := e.build(nil, "-only", "filler-rootfs")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	var logPath string
	for _, ev := range events {
		if ev.Event == "failed" {
			logPath = ev.Log
		}
	}
	if logPath == "" {
		t.Fatalf("no log reported for the failed stage\n%s", stderr)
	}
	if !strings.Contains(stderr, "Full log: "+logPath) {
		t.Errorf("stderr does not print the full log's path %s:\n%s", logPath, stderr)
	}
	b, err := os.ReadFile(logPath)
	if err != nil || !strings.Contains(string(b), "preparing") {
		t.Errorf("the printed full log %s: %v %q", logPath, err, b)
	}
	logs, _ := filepath.Glob(filepath.Join(e.cache, "logs", "*"))
	for _, l := range logs {
		if fi, err := os.Stat(l); err == nil && fi.Size() == 0 {
			t.Errorf("an empty log was left behind: %s", l)
		}
	}
}

// OUT is often a directory with the user's own files: a target whose name
// matches one of them must not delete it, nor a folder named <target>.tmp.
func TestOutputKeepsWhatFgimgDidNotWrite(t *testing.T) {
	e := newEnv(t)
	e.write(buildConfig + `
target "tar" "projects" {
  image       = image.child
  compression = "gzip"
}
`)
	thesis := filepath.Join(e.out, "projects", "thesis", "chapter1.tex")
	notes := filepath.Join(e.out, "child-rootfs.tmp", "notes.txt")
	for _, f := range []string{thesis, notes} {
		os.MkdirAll(filepath.Dir(f), 0o755)
		writeFile(t, f, "three years of work")
	}
	code, events, stderr := e.build(nil)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	for _, f := range []string{thesis, notes} {
		if b, err := os.ReadFile(f); err != nil || string(b) != "three years of work" {
			t.Errorf("the user's %s: %v %q", f, err, b)
		}
	}
	if !strings.Contains(stderr, filepath.Join(e.out, "projects")) || !strings.Contains(stderr, "manifest.json") {
		t.Errorf("the refusal does not name the folder and why:\n%s", stderr)
	}
	if got := names(events, "failed"); len(got) != 1 || got[0] != "target projects" {
		t.Errorf("failed %v, want only target projects", got)
	}
	// The other targets were written beside the user's files, and fgimg
	// replaces its own folder on the next build...
	manifest := filepath.Join(e.out, "child-rootfs", "manifest.json")
	if _, err := os.Stat(manifest); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := e.build(nil, "-only", "child-rootfs"); code != 0 {
		t.Fatalf("rewriting its own folder: exit %d\n%s", code, stderr)
	}
	// ...but not once the user has put a file of their own in it.
	mine := filepath.Join(e.out, "child-rootfs", "mine.txt")
	writeFile(t, mine, "mine")
	if code, _, stderr := e.build(nil, "-only", "child-rootfs"); code != 1 || !strings.Contains(stderr, "mine.txt") {
		t.Errorf("a folder holding a file fgimg did not write was replaced: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("the user's file in a target folder: %v", err)
	}
}

// -o pointing into the cache with a target named "blobs" used to wipe the
// cache's blobs and exit 0.
func TestOutputInsideTheCacheIsRefused(t *testing.T) {
	e := newEnv(t)
	e.write(buildConfig + `
target "tar" "blobs" { image = image.child }
`)
	if code, _, stderr := e.build(nil, "-only", "child-rootfs"); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	blobs, _ := filepath.Glob(filepath.Join(e.cache, "blobs", "sha256", "*"))
	for _, out := range []string{e.cache, filepath.Join(e.cache, "blobs", "..")} {
		code, _, stderr := e.build(nil, "-o", out, "-only", "blobs")
		if code != 1 || !strings.Contains(stderr, "inside the cache") {
			t.Errorf("-o %s: exit %d, want 1 and a refusal\n%s", out, code, stderr)
		}
	}
	after, _ := filepath.Glob(filepath.Join(e.cache, "blobs", "sha256", "*"))
	if len(after) < len(blobs) {
		t.Errorf("the cache lost blobs: %d before, %d after", len(blobs), len(after))
	}
	e.verifyCache()
}

// Concurrent builds into one OUT: each exits 0, and OUT/<target> is never
// missing or half written, neither while they run nor after.
func TestConcurrentExportsIntoOneOutput(t *testing.T) {
	e := newEnv(t)
	if code, _, stderr := e.build(nil); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	artifact := filepath.Join(e.out, "child-rootfs", "rootfs.tar")
	want := mustRead(t, artifact)
	stop := make(chan struct{})
	var missing []string
	var watch sync.WaitGroup
	watch.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, f := range []string{artifact, filepath.Join(e.out, "sibling-oci", "index.json")} {
				if _, err := os.Stat(f); err != nil {
					missing = append(missing, err.Error())
				}
			}
		}
	})
	const n = 6
	var wg sync.WaitGroup
	codes, errs := make([]int, n), make([]string, n)
	for i := range n {
		wg.Go(func() { codes[i], _, errs[i] = e.build(nil) })
	}
	wg.Wait()
	close(stop)
	watch.Wait()
	for i := range n {
		if codes[i] != 0 {
			t.Errorf("build %d: exit %d\n%s", i, codes[i], errs[i])
		}
	}
	if len(missing) > 0 {
		t.Errorf("an artifact was missing %d times while builds exported, first: %s", len(missing), missing[0])
	}
	if got, err := os.ReadFile(artifact); err != nil || !bytes.Equal(got, want) {
		t.Errorf("after the builds, %s: %v (%d bytes, want %d)", artifact, err, len(got), len(want))
	}
	entries, _ := os.ReadDir(e.out)
	if len(entries) != 2 {
		var got []string
		for _, d := range entries {
			got = append(got, d.Name())
		}
		t.Errorf("OUT holds %v, want only the two target folders", got)
	}
}

// A snapshot's etc/passwd edited in the cache used to be built upon by
// later stages while verify said "sound". Verify reports and drops it,
// and the next stage sees the image's own file.
func TestVerifyCatchesATamperedSnapshot(t *testing.T) {
	e := newEnv(t)
	if code, _, stderr := e.build(nil, "-only", "child-rootfs"); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	passwds, _ := filepath.Glob(filepath.Join(e.cache, "snapshots", "*", "etc", "passwd"))
	if len(passwds) != 1 {
		t.Fatalf("want one snapshot with etc/passwd (the bootstrap's), got %v", passwds)
	}
	orig := mustRead(t, passwds[0])
	writeFile(t, passwds[0], "root::0:0:root:/root:/bin/sh\n")
	out, err := e.command(context.Background(), nil, "cache", "verify").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "tampered snapshot") || !strings.Contains(string(out), "etc/passwd") {
		t.Errorf("cache verify must report the tampered snapshot and fail: %v\n%s", err, out)
	}
	e.verifyCache() // and it is gone: the cache is sound again
	e.write(buildConfig + `
image "reader" {
  parent = image.base
  run    = ["cp /etc/passwd /etc/passwd.seen"]
}
target "tar" "reader-rootfs" {
  image       = image.reader
  compression = "none"
}
`)
	if code, _, stderr := e.build(nil, "-only", "reader-rootfs"); code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	seen := readTarFile(t, filepath.Join(e.out, "reader-rootfs", "rootfs.tar"), "etc/passwd.seen")
	if !bytes.Equal(seen, orig) {
		t.Errorf("a later stage saw etc/passwd %q, want the image's %q", seen, orig)
	}
}

// readTarFile returns the content of one file in a tarball.
func readTarFile(t *testing.T, path, name string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in %s: %v", name, path, err)
		}
		if strings.TrimPrefix(h.Name, "./") == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}

// A pedigree deeper than about 230 stages failed to build: the overlay's
// lower dirs no longer fit in one page of mount options. Plan accepts
// any depth the loader does (256 images), so build must too.
func TestDeepPedigreeBuilds(t *testing.T) {
	e := newEnv(t)
	const depth = 250
	var b strings.Builder
	b.WriteString(`
image "i0" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
}
`)
	for i := 1; i <= depth; i++ {
		fmt.Fprintf(&b, `
image "i%d" {
  parent = image.i%d
  file "/etc/layers/%d" {
    content = "%d"
  }
}
`, i, i-1, i, i)
	}
	fmt.Fprintf(&b, `
image "top" {
  parent = image.i%d
  run    = ["ls /etc/layers | wc -l > /etc/layer-count"]
}
target "tar" "deep" {
  image       = image.top
  compression = "none"
}
`, depth)
	e.write(b.String())
	start := time.Now()
	code, _, stderr := e.build(nil)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, tailLines(stderr, 20))
	}
	t.Logf("built a %d-stage pedigree in %s", depth+2, time.Since(start).Round(time.Millisecond))
	tarball := filepath.Join(e.out, "deep", "rootfs.tar")
	if got := strings.TrimSpace(string(readTarFile(t, tarball, "etc/layer-count"))); got != fmt.Sprint(depth) {
		t.Errorf("the top stage saw %s files of its %d ancestors", got, depth)
	}
	for _, i := range []int{1, depth / 2, depth} {
		if got := string(readTarFile(t, tarball, fmt.Sprintf("etc/layers/%d", i))); got != fmt.Sprint(i) {
			t.Errorf("etc/layers/%d holds %q", i, got)
		}
	}
	e.verifyCache()
}

func tailLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
