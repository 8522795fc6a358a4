package sandbox

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestRunMemoryLimit(t *testing.T) {
	l := newLayout(t)
	// busybox dd holds one block of bs bytes in memory.
	const script = `dd if=/dev/zero of=/dev/null bs=64M count=1 && echo done`
	s := l.spec(script)
	s.MaxMemory = 32 << 20
	out, errOut, err := run(t, context.Background(), s)
	var me *MemoryLimitError
	if !errors.As(err, &me) {
		t.Fatalf("a command using more than its 32 MiB: err = %v (want a *MemoryLimitError); stdout %q; stderr %q", err, out, errOut)
	}
	if me.Limit != 32<<20 || !strings.Contains(err.Error(), "32 MiB") || !strings.Contains(err.Error(), "--stage-memory") {
		t.Errorf("error %q does not name the limit and the flag", err)
	}
	// The default bound is generous.
	if out, errOut, err := run(t, context.Background(), l.spec(script)); err != nil || !strings.Contains(out, "done") {
		t.Errorf("with the default limit: %v; stdout %q; stderr %q", err, out, errOut)
	}
}

// TestRunCPULimit: a command with MaxCPUs runs in a cgroup whose CPU
// quota is that many CPUs' time per period.
func TestRunCPULimit(t *testing.T) {
	l := newLayout(t)
	s := l.spec(`cat /proc/self/cgroup; echo end; read x; true`)
	s.MaxCPUs = 0.5
	h := startHeld(s)
	var cgroups []string
	for line := range h.lines {
		if line == "end" {
			break
		}
		cgroups = append(cgroups, line)
	}
	// The command's cgroup in the hierarchy with the cpu controller: v2's
	// unified one ("0::/path"), else v1's "N:cpu,cpuacct:/path".
	var quota string
	for _, l := range cgroups {
		f := strings.SplitN(l, ":", 3)
		if len(f) != 3 {
			continue
		}
		if f[1] == "" {
			if b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", f[2], "cpu.max")); err == nil {
				quota = strings.TrimSpace(string(b))
			}
		}
		if slices.Contains(strings.Split(f[1], ","), "cpu") {
			dir, err := ownV1Cgroup("cpu")
			if err != nil {
				t.Fatal(err)
			}
			own, _ := ownCgroupPaths()
			dir = filepath.Join(strings.TrimSuffix(dir, own["cpu"]), f[2])
			q, err1 := os.ReadFile(filepath.Join(dir, "cpu.cfs_quota_us"))
			p, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
			if err1 == nil && err2 == nil {
				quota = strings.TrimSpace(string(q)) + " " + strings.TrimSpace(string(p))
			}
		}
	}
	if err := h.finish(); err != nil {
		t.Fatal(err)
	}
	if quota != "50000 100000" {
		t.Errorf("the command's CPU quota is %q, want half a CPU (50000 100000); its cgroups:\n%s", quota, strings.Join(cgroups, "\n"))
	}
}
