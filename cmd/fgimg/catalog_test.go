package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/cache"
	"github.com/opencontainers/go-digest"
)

// fgimg runs a command and returns its exit code and output.
func (e *env) fgimg(args ...string) (int, string, string) {
	e.t.Helper()
	var stdout, stderr strings.Builder
	cmd := e.command(context.Background(), nil, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(interface{ ExitCode() int }); ok && err != nil {
		code = ee.ExitCode()
	}
	return code, stdout.String(), stderr.String()
}

// images runs `fgimg images --json QUERY`.
func (e *env) images(query string) []map[string]any {
	e.t.Helper()
	code, out, errs := e.fgimg("images", "--json", query)
	if code != 0 {
		e.t.Fatalf("images %q: exit %d\n%s", query, code, errs)
	}
	var rows []map[string]any
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		e.t.Fatalf("images %q: %v\n%s", query, err, out)
	}
	return rows
}

func column(rows []map[string]any, f string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, fmt.Sprint(r[f]))
	}
	slices.Sort(out)
	return out
}

func (e *env) mustBuildT(args ...string) {
	e.t.Helper()
	if code, _, stderr := e.build(nil, args...); code != 0 {
		e.t.Fatalf("build: exit %d\n%s", code, stderr)
	}
}

func TestCatalogImagesShowUsage(t *testing.T) {
	e := newEnv(t)
	e.mustBuildT()
	rows := e.images("name,type,kind,aim,access_count")
	if got, want := column(rows, "name"), []string{"base", "child", "child-rootfs", "sibling", "sibling-oci"}; !slices.Equal(got, want) {
		t.Fatalf("entries %v, want %v", got, want)
	}
	if got := column(e.images("name where type=target, kind~^t"), "name"); !slices.Equal(got, []string{"child-rootfs"}) {
		t.Errorf("target of kind ~^t: %v", got)
	}
	// Every export by build is a use.
	e.mustBuildT()
	rows = e.images("name,access_count where name=child-rootfs")
	if len(rows) != 1 || rows[0]["access_count"] != float64(2) {
		t.Errorf("after two builds: %v, want access_count 2", rows)
	}
	if got := column(e.images("name where type=target order by access_count desc limit 1"), "name"); len(got) != 1 {
		t.Errorf("order by and limit: %v", got)
	}
	code, out, errs := e.fgimg("show", "child-rootfs")
	if code != 0 {
		t.Fatalf("show: %d %s", code, errs)
	}
	for _, want := range []string{"target", "child-rootfs", "pedigree", "base > child", "Stages:", "bootstrap", "Artifacts:", "Software stack:", "Usage: 2", "export", "Templates:"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	// A digest prefix names the same entry.
	code, js, _ := e.fgimg("show", "--json", "child-rootfs")
	var full struct {
		ID     string `json:"id"`
		Stages []struct{ Digest string }
		Usage  []struct{ What string }
	}
	if code != 0 || json.Unmarshal([]byte(js), &full) != nil || len(full.Stages) < 4 || full.Stages[len(full.Stages)-1].Digest != full.ID || len(full.Usage) != 2 {
		t.Fatalf("show --json: %d %+v\n%s", code, full, js)
	}
	if code, out, _ := e.fgimg("show", strings.TrimPrefix(full.ID, "sha256:")[:10]); code != 0 || !strings.Contains(out, "child-rootfs") {
		t.Errorf("show by digest prefix: %d\n%s", code, out)
	}
	// A malformed query points at its column.
	code, _, errs = e.fgimg("images", "name where sise>1GiB")
	if code != exitUsage || !strings.Contains(errs, "column 12") || !strings.Contains(errs, "\n"+strings.Repeat(" ", 2+11)+"^") {
		t.Errorf("bad query: exit %d\n%s", code, errs)
	}
}

// buildVar is buildConfig with a child whose content follows var.n.
const buildVar = `
variable "n" {
  default = "0"
}
image "base" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
}
image "child" {
  parent = image.base
  run    = ["echo ${var.n} > /etc/n"]
}
target "tar" "child-rootfs" {
  image       = image.child
  compression = "none"
}
`

func TestCatalogPurge(t *testing.T) {
	e := newEnv(t)
	e.write(buildVar)
	e.mustBuildT("-var", "n=1")
	e.mustBuildT("-var", "n=2")
	e.mustBuildT("-var", "n=3")
	if got := len(e.images("name where name=child")); got != 3 {
		t.Fatalf("%d builds of child in the catalog, want 3", got)
	}
	oldest := e.images("id where name=child order by created limit 1")[0]["id"].(string)
	if code, _, errs := e.fgimg("keep", oldest); code != 0 {
		t.Fatalf("keep: %s", errs)
	}
	// Hold the lock of the second build's child stage, as a build would.
	mid := e.images("id,keep where name=child, keep=false order by created limit 1")[0]["id"].(string)
	store, err := cache.Open(e.cache)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	unlock, err := store.Lock(context.Background(), digest.Digest(mid))
	if err != nil {
		t.Fatal(err)
	}
	recsBefore, _ := store.Records()

	time.Sleep(1100 * time.Millisecond)
	code, out, errs := e.fgimg("purge", "-dry-run", "-unused-for", "1s", "-keep-last", "1")
	if code != 0 {
		t.Fatalf("purge -dry-run: %d %s", code, errs)
	}
	// The kept build and the newest stay; the middle one is locked; the
	// middle tar target would go (its write stage is free).
	if !strings.Contains(out, "kept image child "+mid[7:19]) || !strings.Contains(out, "in use by a running build") ||
		!strings.Contains(out, "would purge target child-rootfs") || strings.Contains(out, oldest[7:19]) {
		t.Errorf("purge -dry-run:\n%s", out)
	}
	if recs, _ := store.Records(); len(recs) != len(recsBefore) {
		t.Errorf("a dry run removed records: %d, then %d", len(recsBefore), len(recs))
	}
	unlock()
	code, out, errs = e.fgimg("purge", "-unused-for", "1s", "-keep-last", "1")
	if code != 0 || !strings.Contains(out, "purged image child "+mid[7:19]) || !strings.Contains(out, "frees") {
		t.Fatalf("purge: %d\n%s%s", code, out, errs)
	}
	purged := e.images("id,name,status where status=purged")
	if got := column(purged, "name"); !slices.Equal(got, []string{"child", "child-rootfs", "child-rootfs"}) {
		t.Errorf("purged entries %v, want the middle child and the two older child-rootfs (keep marks only the image)", got)
	}
	if store.Has(digest.Digest(mid)) {
		t.Errorf("the purged child's stage is still cached")
	}
	if !store.Has(digest.Digest(oldest)) {
		t.Errorf("the kept child's stage was purged")
	}
	// The purged entry keeps its full record.
	if code, out, _ := e.fgimg("show", mid); code != 0 || !strings.Contains(out, "purged") || !strings.Contains(out, "Stages:") {
		t.Errorf("show of a purged entry: %d\n%s", code, out)
	}
	e.verifyCache()
	// Building it again works from the parent still cached, and the
	// entry is built again.
	e.mustBuildT("-var", "n=2")
	e.verifyCache()
	if got := e.images("status where id=" + mid); len(got) != 1 || got[0]["status"] != "built" {
		t.Errorf("after building the purged child again: %v, want status built", got)
	}
}

func TestCatalogConcurrentBuilds(t *testing.T) {
	e := newEnv(t)
	e.write(buildVar)
	var wg sync.WaitGroup
	errs := make([]string, 4)
	codes := make([]int, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, errs[i] = e.build(nil, "-o", filepath.Join(e.dir, fmt.Sprint("out", i)), "-var", fmt.Sprint("n=", i))
		}()
	}
	wg.Wait()
	for i := range 4 {
		if codes[i] != 0 || strings.Contains(errs[i], "locked") {
			t.Errorf("build %d: exit %d\n%s", i, codes[i], errs[i])
		}
	}
	if got := len(e.images("name where name=child")); got != 4 {
		t.Errorf("%d child entries, want 4", got)
	}
	if got := len(e.images("name where name=child-rootfs, access_count=1")); got != 4 {
		t.Errorf("%d child-rootfs entries used once, want 4", got)
	}
}

func TestCatalogRebuildAndKill(t *testing.T) {
	e := newEnv(t)
	e.mustBuildT()
	e.mustBuildT()
	before := e.images("* order by name")
	db := filepath.Join(e.cache, "catalog", "index.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(db + suffix)
	}
	after := e.images("* order by name")
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Errorf("after deleting the index, images differs:\n%s\n%s", b1, b2)
	}
	if code, out, errs := e.fgimg("catalog", "rebuild"); code != 0 || !strings.Contains(out, "5 entries") {
		t.Errorf("catalog rebuild: %d %s %s", code, out, errs)
	}
	// Many records make a rebuild long enough to be killed in its
	// middle; then the catalog is as before, or fully rebuilt.
	entries := filepath.Join(e.cache, "catalog", "entries")
	src, _ := filepath.Glob(filepath.Join(entries, "*-base.json"))
	data, _ := os.ReadFile(src[0])
	var rec map[string]any
	json.Unmarshal(data, &rec)
	for i := range 3000 {
		rec["id"] = digest.FromString(fmt.Sprint(i)).String()
		rec["name"] = fmt.Sprint("copy", i)
		b, _ := json.Marshal(rec)
		os.WriteFile(filepath.Join(entries, digest.FromString(fmt.Sprint(i)).Encoded()+"-"+fmt.Sprint("copy", i)+".json"), b, 0o644)
	}
	for _, delay := range []time.Duration{50 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond} {
		cmd := e.command(context.Background(), nil, "catalog", "rebuild")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		n := len(e.images("name"))
		if n != 5 && n != 3005 {
			t.Errorf("after kill -9 %v into a rebuild: %d entries, want 5 or 3005", delay, n)
		}
	}
	if code, out, errs := e.fgimg("catalog", "rebuild"); code != 0 || !strings.Contains(out, "3005 entries") {
		t.Errorf("catalog rebuild: %d %s %s", code, out, errs)
	}
	if n := len(e.images("name")); n != 3005 {
		t.Errorf("after rebuild: %d entries", n)
	}
}

// A purge while a build runs leaves what the build uses, the cached
// parent it only reads included; the build succeeds and the cache
// verifies.
func TestPurgeDuringBuild(t *testing.T) {
	e := newEnv(t)
	e.write(strings.Replace(buildVar, `run    = ["echo ${var.n} > /etc/n"]`, `run    = ["sleep ${var.n}", "echo ${var.n} > /etc/n"]`, 1))
	e.mustBuildT("-var", "n=0")
	base := e.images("id where name=base")[0]["id"].(string)
	cmd := e.command(context.Background(), nil, "build", "--json", "-o", e.out, "-var", "n=3")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && !(strings.Contains(sc.Text(), `"event":"start"`) && strings.Contains(sc.Text(), "child: run")) {
	}
	go io.Copy(io.Discard, stdout)
	code, out, errs := e.fgimg("purge", "-unused-for", "0s", "-keep-last", "0")
	if err := cmd.Wait(); err != nil {
		t.Fatalf("the build during the purge: %v\n%s", err, stderr.String())
	}
	if code != 0 {
		t.Fatalf("purge: exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "kept image base "+base[7:19]+": in use by a running build") || !strings.Contains(out, "purged image child") {
		t.Errorf("purge during a build of a child of base:\n%s", out)
	}
	store, err := cache.Open(e.cache)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if !store.Has(digest.Digest(base)) {
		t.Errorf("the parent the build read was purged")
	}
	e.verifyCache()
	if got := e.images("status where name=child, status=built"); len(got) != 1 {
		t.Errorf("%d built child entries after the build, want 1 (the new one)", len(got))
	}
}

// kill -9 while a command takes in a long pending journal: the next
// command sees the index as before or with the whole journal, and no
// use is counted twice.
func TestCatalogKillWhileTakingJournal(t *testing.T) {
	e := newEnv(t)
	e.mustBuildT()
	before := len(e.images("name"))
	dir := filepath.Join(e.cache, "catalog")
	src, _ := filepath.Glob(filepath.Join(dir, "entries", "*-base.json"))
	data, _ := os.ReadFile(src[0])
	var rec map[string]any
	json.Unmarshal(data, &rec)
	var keys []string
	var uses []map[string]any
	when := time.Now().UTC()
	for i := range 3000 {
		id := digest.FromString(fmt.Sprint("journal ", i))
		rec["id"], rec["name"] = id.String(), fmt.Sprint("copy", i)
		b, _ := json.Marshal(rec)
		k := id.Encoded() + "-" + fmt.Sprint("copy", i)
		os.WriteFile(filepath.Join(dir, "entries", k+".json"), b, 0o644)
		keys = append(keys, k)
		uses = append(uses, map[string]any{"key": k, "who": "u", "when": when, "what": "export"})
	}
	line, _ := json.Marshal(map[string]any{"keys": keys, "uses": uses})
	if err := os.WriteFile(filepath.Join(dir, "pending.log"), append(line, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, delay := range []time.Duration{50 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond} {
		cmd := e.command(context.Background(), nil, "images", "name")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	if n := len(e.images("name")); n != before+3000 {
		t.Errorf("after kills while taking the journal in: %d entries, want %d", n, before+3000)
	}
	if n := len(e.images("name where name~^copy, access_count=1")); n != 3000 {
		t.Errorf("%d copies used once, want 3000 (none counted twice)", n)
	}
}
