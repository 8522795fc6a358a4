package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/testkit"
)

// buildConfig is a pedigree on a busybox root filesystem: no network.
const buildConfig = `
image "base" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
  file "/etc/motd" {
    content = "hello\n"
  }
  run = ["echo built > /etc/built", "ln /etc/built /etc/built-link"]
}

image "child" {
  parent = image.base
  file "/etc/child" {
    content = "CHILD"
    mode    = "0600"
  }
  run = ["rm /etc/motd"]
}

image "sibling" {
  parent = image.base
  run    = ["mkdir -p /srv/www", "echo hi > /srv/www/index.html"]
}

target "tar" "child-rootfs" {
  image       = image.child
  compression = "none"
}

target "oci" "sibling-oci" {
  image = image.sibling
}
`

type env struct {
	t          *testing.T
	dir, cache string
	out        string
	// bin, when set, is an fgimg binary to run instead of the test
	// binary acting as main (benchmarks of whole processes: see
	// fgimgBinary).
	bin string
}

// newEnv writes the busybox configuration into a fresh directory.
func newEnv(t *testing.T) *env { return newEnvWith(t, buildConfig) }

// newEnvWith writes config, on the busybox root filesystem, into a fresh
// directory.
func newEnvWith(t *testing.T, config string) *env {
	if os.Geteuid() != 0 {
		t.Skip("building needs root (or user namespaces); run the tests as root")
	}
	e := &env{t: t, dir: t.TempDir(), cache: t.TempDir()}
	e.out = filepath.Join(e.dir, "out")
	root := t.TempDir()
	testkit.BusyboxRootfs(t, root)
	testkit.RootfsTar(t, filepath.Join(e.dir, "rootfs.tar"), root)
	e.write(config)
	return e
}

func (e *env) write(config string) {
	writeFile(e.t, filepath.Join(e.dir, "main.fg.hcl"), config)
}

// command returns fgimg as a process: the test binary acting as main.
func (e *env) command(ctx context.Context, extraEnv []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FGIMG_TEST_AS_MAIN=1", "FGIMG_CACHE="+e.cache)
	if e.bin != "" {
		cmd = exec.CommandContext(ctx, e.bin, args...)
		cmd.Env = append(os.Environ(), "FGIMG_CACHE="+e.cache)
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Dir = e.dir
	return cmd
}

// build runs fgimg build --json and returns its exit code, its events
// and its stderr.
func (e *env) build(extraEnv []string, args ...string) (int, []jsonEvent, string) {
	e.t.Helper()
	code, stdout, stderr := e.runEnv(extraEnv, append([]string{"build", "--json", "-o", e.out}, args...)...)
	var events []jsonEvent
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var ev jsonEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			e.t.Fatalf("not a JSON event: %q", sc.Text())
		}
		events = append(events, ev)
	}
	return code, events, stderr
}

// run runs fgimg with args and returns its exit code, stdout and stderr.
func (e *env) run(args ...string) (int, string, string) {
	e.t.Helper()
	return e.runEnv(nil, args...)
}

// runEnv is run with more environment variables.
func (e *env) runEnv(extraEnv []string, args ...string) (int, string, string) {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := e.command(context.Background(), extraEnv, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// names lists the events of a kind as "name" strings.
func names(events []jsonEvent, kind string) []string {
	var out []string
	for _, ev := range events {
		if ev.Event == kind {
			out = append(out, ev.Name)
		}
	}
	return out
}

// readTar returns a tarball's entries by name.
func readTar(t *testing.T, path string) map[string]*tar.Header {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimPrefix(strings.TrimSuffix(h.Name, "/"), "./")] = h
	}
}

func TestBuildRebuildsOnlyWhatChanged(t *testing.T) {
	e := newEnv(t)
	code, events, stderr := e.build(nil)
	if code != 0 {
		t.Fatalf("build: exit %d\n%s", code, stderr)
	}
	// base: bootstrap, files, run; child: files, run; sibling: run; 2 targets.
	if got := names(events, "built"); len(got) != 8 {
		t.Fatalf("built %v", got)
	}

	entries := readTar(t, filepath.Join(e.out, "child-rootfs", "rootfs.tar"))
	if h := entries["etc/child"]; h == nil || h.Mode&0o7777 != 0o600 || h.Size != 5 {
		t.Errorf("etc/child: %+v", h)
	}
	if _, ok := entries["etc/motd"]; ok {
		t.Error("etc/motd was removed by the child's run stage but is in its rootfs")
	}
	if h := entries["etc/built-link"]; h == nil || h.Typeflag != tar.TypeLink {
		t.Errorf("the hard link made by a run stage: %+v", h)
	}
	if _, ok := entries["srv/www/index.html"]; ok {
		t.Error("the sibling's file leaked into the child")
	}
	var m struct {
		Target    string
		Kind      string
		Image     string
		ImageID   string `json:"image_id"`
		Pedigree  []string
		Stages    []string
		Artifacts []struct {
			Path      string
			Digest    string
			MediaType string `json:"media_type"`
			Size      int64
		}
	}
	b, err := os.ReadFile(filepath.Join(e.out, "child-rootfs", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(b, &m)
	if m.Target != "child-rootfs" || m.Kind != "tar" || m.Image != "child" || m.ImageID != m.Stages[4] ||
		strings.Join(m.Pedigree, ">") != "base>child" || len(m.Stages) != 6 || len(m.Artifacts) != 2 || m.Artifacts[0].Path != "rootfs.tar" ||
		m.Artifacts[1].Path != "sbom.spdx.json" || m.Artifacts[1].MediaType != "application/spdx+json" {
		t.Errorf("manifest.json: %s", b)
	}
	sum := sha256.Sum256(mustRead(t, filepath.Join(e.out, "child-rootfs", "rootfs.tar")))
	if m.Artifacts[0].Digest != fmt.Sprintf("sha256:%x", sum) {
		t.Errorf("manifest digest %s does not match the file", m.Artifacts[0].Digest)
	}
	if _, err := os.Stat(filepath.Join(e.out, "sibling-oci", "index.json")); err != nil {
		t.Errorf("oci target: %v", err)
	}

	// A second build is a no-op that still writes the artifacts.
	os.RemoveAll(e.out)
	code, events, stderr = e.build(nil)
	if code != 0 || len(names(events, "built")) != 0 || len(names(events, "cached")) != 8 {
		t.Fatalf("no-op build: exit %d, built %v\n%s", code, names(events, "built"), stderr)
	}
	if _, err := os.Stat(filepath.Join(e.out, "child-rootfs", "rootfs.tar")); err != nil {
		t.Errorf("a cached target must still be exported: %v", err)
	}

	// Editing the child's file rebuilds the child's files and run stages
	// and its target, nothing else.
	e.write(strings.Replace(buildConfig, `"CHILD"`, `"CHANGED"`, 1))
	code, events, stderr = e.build(nil)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	built := strings.Join(names(events, "built"), ", ")
	if built != "child: files, child: run, target child-rootfs" {
		t.Errorf("after editing the child's file, built: %s", built)
	}
}

func TestFailingStageLeavesTheCacheIntact(t *testing.T) {
	e := newEnv(t)
	bad := buildConfig + `
image "bad" {
  parent = image.base
  run    = ["echo preparing", "echo about to fail >&2; exit 3", "echo never"]
}
target "tar" "bad-rootfs" { image = image.bad }
`
	e.write(bad)
	code, events, stderr := e.build(nil)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	for _, want := range []string{`Error: bad: run failed`, `image "bad", run stage`, "about to fail", "Full log: "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "never") {
		t.Error("commands after the failed one ran")
	}
	if got := names(events, "not-run"); len(got) != 1 || got[0] != "target bad-rootfs" {
		t.Errorf("not run: %v", got)
	}
	if got := names(events, "built"); len(got) != 8 {
		t.Errorf("independent work must finish: built %v", got)
	}
	var logPath string
	for _, ev := range events {
		if ev.Event == "failed" {
			logPath = ev.Log
		}
	}
	if b, err := os.ReadFile(logPath); err != nil || !strings.Contains(string(b), "preparing") {
		t.Errorf("full log %q: %v %q", logPath, err, b)
	}
	e.verifyCache()
	e.write(buildConfig)
	if code, events, stderr := e.build(nil); code != 0 || len(names(events, "built")) != 0 {
		t.Errorf("after the failure everything else is cached: exit %d, built %v\n%s", code, names(events, "built"), stderr)
	}
}

func (e *env) verifyCache() {
	e.t.Helper()
	out, err := e.command(context.Background(), nil, "cache", "verify").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "sound") {
		e.t.Errorf("cache verify: %v\n%s", err, out)
	}
}

func TestConcurrentBuildsShareOneCache(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	results := make([][]jsonEvent, 2)
	codes := make([]int, 2)
	outs := make([]string, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], results[i], outs[i] = e.build(nil, "-o", filepath.Join(e.dir, fmt.Sprint("out", i)))
		}()
	}
	wg.Wait()
	builtOnce := map[string]int{}
	for i := range 2 {
		if codes[i] != 0 {
			t.Fatalf("build %d: exit %d\n%s", i, codes[i], outs[i])
		}
		for _, n := range names(results[i], "built") {
			if !strings.HasPrefix(n, "target ") {
				builtOnce[n]++
			}
		}
	}
	for n, c := range builtOnce {
		if c > 1 {
			t.Errorf("stage %s built %d times", n, c)
		}
	}
	if len(builtOnce) != 6 {
		t.Errorf("built %v", builtOnce)
	}
	e.verifyCache()
}

// TestKilledBuild kills fgimg with SIGKILL in the middle of a stage:
// no process and no mount may survive it, the cache must verify, and the
// next build must succeed.
func TestKilledBuild(t *testing.T) {
	e := newEnv(t)
	marker := fmt.Sprintf("sleep %d", 900000+time.Now().UnixNano()%99999)
	e.write(strings.Replace(buildConfig, `run    = ["mkdir -p /srv/www"`, `run    = ["`+marker+`", "mkdir -p /srv/www"`, 1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := e.command(ctx, nil, "build", "--json", "-j", "1", "-o", e.out)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"start"`) && strings.Contains(sc.Text(), "sibling: run") {
			break
		}
	}
	waitFor(t, "the sleep to start", func() bool { return processWith(marker) })
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	waitFor(t, "every process to go", func() bool { return !processWith(marker) })
	waitFor(t, "every mount to go", func() bool { return !mountedUnder(e.cache) })
	e.verifyCache()
	e.write(buildConfig)
	if code, _, stderr := e.build(nil); code != 0 {
		t.Fatalf("build after kill -9: exit %d\n%s", code, stderr)
	}
	e.verifyCache()
}

func TestInterruptStopsCleanly(t *testing.T) {
	e := newEnv(t)
	marker := fmt.Sprintf("sleep %d", 800000+time.Now().UnixNano()%99999)
	e.write(strings.Replace(buildConfig, `run    = ["mkdir -p /srv/www"`, `run    = ["`+marker+`", "mkdir -p /srv/www"`, 1))
	cmd := e.command(context.Background(), nil, "build", "-o", e.out)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the sleep to start", func() bool { return processWith(marker) })
	start := time.Now()
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Errorf("exit: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %s to stop", time.Since(start))
	}
	if !strings.Contains(stderr.String(), "Interrupted") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
	waitFor(t, "every process to go", func() bool { return !processWith(marker) })
	if mountedUnder(e.cache) {
		t.Error("a mount survived the interrupt")
	}
	e.verifyCache()
}

// kernelledConfig adds to buildConfig an image with a stand-in kernel
// and an init, and a netboot target "nb" of it.
const kernelledConfig = `
image "kernelled" {
  parent = image.child
  file "/boot/vmlinuz-1.0" {
    content = "a stand-in kernel"
  }
  run = ["mkdir -p /sbin", "ln -s /bin/busybox /sbin/init"]
}
target "netboot" "nb" {
  image       = image.kernelled
  kernel_args = ["console=ttyS0"]
}
`

func TestReproducibleArtifacts(t *testing.T) {
	e := newEnv(t)
	e.write(buildConfig + kernelledConfig + `
target "raw" "disk" {
  image = image.kernelled
  boot  = "none"
  size  = "512MiB"
}
`)
	epoch := []string{"SOURCE_DATE_EPOCH=1700000000"}
	var sums []string
	for i := range 2 {
		e.cache = t.TempDir()
		if i == 1 {
			time.Sleep(1100 * time.Millisecond) // different wall-clock times
		}
		if code, _, stderr := e.build(epoch); code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		h := sha256.New()
		for _, f := range []string{"child-rootfs/rootfs.tar", "sibling-oci/index.json", "nb/initramfs.cpio.gz", "disk/disk.raw"} {
			h.Write(mustRead(t, filepath.Join(e.out, f)))
		}
		sums = append(sums, fmt.Sprintf("%x", h.Sum(nil)))
	}
	if sums[0] != sums[1] {
		t.Error("two clean builds with SOURCE_DATE_EPOCH gave different artifacts (tar, oci, initramfs or disk)")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// processWith reports whether a process's command line contains s.
func processWith(s string) bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			return true
		}
	}
	return false
}

// mountedUnder reports whether any mount in the host namespace lies under dir.
func mountedUnder(dir string) bool {
	b, _ := os.ReadFile("/proc/1/mountinfo")
	return strings.Contains(string(b), dir)
}

func TestBuildFromOCILayoutAndCacheCommands(t *testing.T) {
	e := newEnv(t)
	testkit.OCILayout(t, filepath.Join(e.dir, "layout"), func(dir string) { testkit.BusyboxRootfs(t, dir) })
	e.write(`
image "app" {
  from = "oci:layout:latest"
  run  = ["echo hi > /hello"]
}
target "oci" "app-oci" { image = image.app }
`)
	code, events, stderr := e.build(nil)
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if got := strings.Join(names(events, "built"), ", "); got != "app: from, app: run, target app-oci" {
		t.Errorf("built %s", got)
	}
	out, err := e.command(context.Background(), nil, "cache", "ls").CombinedOutput()
	for _, kind := range []string{"from", "run", "oci"} {
		if err != nil || !strings.Contains(string(out), " "+kind+" ") {
			t.Errorf("cache ls lacks a %s record: %v\n%s", kind, err, out)
		}
	}
	out, err = e.command(context.Background(), nil, "cache", "du").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "blobs") || !strings.Contains(string(out), e.cache) {
		t.Errorf("cache du: %v\n%s", err, out)
	}
	// Corrupt one blob: verify names it and exits 1.
	blobs, _ := filepath.Glob(filepath.Join(e.cache, "blobs", "sha256", "*"))
	os.Chmod(blobs[0], 0o644)
	f, _ := os.OpenFile(blobs[0], os.O_WRONLY, 0)
	f.WriteAt([]byte("X"), 0)
	f.Close()
	out, err = e.command(context.Background(), nil, "cache", "verify").CombinedOutput()
	if err == nil || !strings.Contains(string(out), filepath.Base(blobs[0])[:12]) {
		t.Errorf("cache verify must report the corrupt blob and fail: %v\n%s", err, out)
	}
}

// Stages whose layers are identical (commands that change nothing) share
// one snapshot; stacking it twice must not break the stages above.
func TestIdenticalLayersInOneChain(t *testing.T) {
	e := newEnv(t)
	e.write(buildConfig + `
image "quiet" {
  parent = image.base
  run    = ["true"]
}
image "quieter" {
  parent = image.quiet
  run    = ["true"]
}
image "top" {
  parent = image.quieter
  run    = ["echo top > /etc/top"]
}
target "tar" "top-rootfs" {
  image       = image.top
  compression = "none"
}
`)
	code, _, stderr := e.build(nil, "-only", "top-rootfs")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	entries := readTar(t, filepath.Join(e.out, "top-rootfs", "rootfs.tar"))
	if entries["etc/top"] == nil || entries["etc/motd"] == nil {
		t.Error("the top image lacks its own file or its base's")
	}
}

// TestBuildSaysEverythingOnce: a build with stages to run starts fgimg
// again in a private mount namespace, and a no-op build does not; either
// way a template's warning and the summary are said once, and the no-op
// leaves no mount behind.
func TestBuildSaysEverythingOnce(t *testing.T) {
	e := newEnvWith(t, `image "base" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
  file "/etc/odd" {
    content = "x"
    mode    = "1644"
  }
}
target "tar" "base-rootfs" {
  image       = image.base
  compression = "none"
}
`)
	for i, want := range []string{"built", "cached"} {
		code, stdout, stderr := e.run("build", "-o", e.out)
		if code != 0 {
			t.Fatalf("build %d: exit %d\n%s", i+1, code, stderr)
		}
		if n := strings.Count(stderr, "Unsafe file mode"); n != 1 {
			t.Errorf("build %d: the warning said %d times:\n%s", i+1, n, stderr)
		}
		if n := strings.Count(stderr, "Build: "); n != 1 {
			t.Errorf("build %d: the summary said %d times:\n%s%s", i+1, n, stdout, stderr)
		}
		if !regexp.MustCompile(want + `\s+base: files`).MatchString(stderr) {
			t.Errorf("build %d: base's files stage not %s:\n%s", i+1, want, stderr)
		}
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(b), e.cache) {
		t.Errorf("a mount of the cache is left:\n%s", b)
	}
}
