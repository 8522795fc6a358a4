package main

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestBuildStageTimeout(t *testing.T) {
	e := newEnv(t)
	e.write(`
image "slow" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
  run = ["sleep 1000"]
}
target "tar" "slow-rootfs" { image = image.slow }
`)
	start := time.Now()
	code, _, stderr := e.build(nil, "--stage-timeout", "2s")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	if want := "stopped after 2s, the stage timeout (fgimg build --stage-timeout sets another; 0 means none)"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("the build took %s", d)
	}
	if code, _, stderr := e.build(nil, "--stage-timeout", "-1s"); code != 2 || !strings.Contains(stderr, "--stage-timeout must not be negative") {
		t.Errorf("negative timeout: exit %d\n%s", code, stderr)
	}
}

func TestBuildStageMemory(t *testing.T) {
	e := newEnv(t)
	e.write(`
image "hungry" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
  run = ["dd if=/dev/zero of=/dev/null bs=96M count=1"]
}
target "tar" "hungry-rootfs" { image = image.hungry }
`)
	code, _, stderr := e.build(nil, "--stage-memory", "48MiB")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	if want := "ran out of its memory limit of 48 MiB and the kernel's OOM killer ended it (fgimg build --stage-memory sets another limit)"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
	if code, _, stderr := e.build(nil, "--stage-memory", "1GB"); code != 2 || !strings.Contains(stderr, "did you mean GiB") {
		t.Errorf("a size in GB: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := e.build(nil); code != 0 {
		t.Errorf("with the default limit: exit %d\n%s", code, stderr)
	}
}

// TestBuildStageCPUs: with --stage-cpus a command spinning for two
// seconds gets no more than its share of CPU time.
func TestBuildStageCPUs(t *testing.T) {
	e := newEnv(t)
	e.write(`
image "spin" {
  bootstrap "tar" {
    source = "rootfs.tar"
  }
  run = ["busybox timeout 2 busybox sh -c 'while :; do :; done'; times; exit 3"]
}
target "tar" "spin-rootfs" { image = image.spin }
`)
	code, events, stderr := e.build(nil, "--stage-cpus", "0.02")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (the command fails on purpose)\n%s", code, stderr)
	}
	var log []byte
	for _, ev := range events {
		if ev.Event == "failed" {
			log, _ = os.ReadFile(ev.Log)
		}
	}
	// times prints the shell's user and system time, then its children's.
	m := regexp.MustCompile(`(?m)^\S+ \S+\n(\d+)m([\d.]+)s (\d+)m([\d.]+)s$`).FindSubmatch(log)
	if m == nil {
		t.Fatalf("no output of times in the stage log:\n%s\n%s", log, stderr)
	}
	minutes, _ := strconv.Atoi(string(m[1]))
	secs, _ := strconv.ParseFloat(string(m[2]), 64)
	user := float64(minutes)*60 + secs
	t.Logf("the spinning command had %.2f s of CPU time", user)
	if user > 0.3 {
		t.Errorf("a command bound to 0.02 CPUs spun for %.2f s of CPU time in 2 s", user)
	}
	if code, _, stderr := e.build(nil, "--stage-cpus", "-1"); code != 2 || !strings.Contains(stderr, "--stage-cpus must be 0 (no bound) or at least 0.01") {
		t.Errorf("a negative CPU bound: exit %d\n%s", code, stderr)
	}
}
