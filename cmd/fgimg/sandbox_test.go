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
