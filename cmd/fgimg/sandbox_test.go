package main

import (
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
