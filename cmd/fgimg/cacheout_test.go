package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

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
