package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/registrytest"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/lang"
)

// BenchmarkSharedHadoop builds the examples' hadoop qcow2 three ways, side
// by side: cold (an empty cache, no shared repository); on a fresh
// runner with an empty cache and a warm shared repository (the bar:
// at most 0.1× cold); and a no-op build against the shared repository
// with everything present (the bar: under 1 s). It needs the Debian
// mirror and takes minutes.
func BenchmarkSharedHadoop(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("building needs root")
	}
	testkit.Need(b, "debootstrap")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, lang.DefaultMirror+"/dists/bookworm/Release", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		b.Skipf("the Debian mirror is unreachable: %v", err)
	} else {
		resp.Body.Close()
	}
	reg := registrytest.Start(b, registrytest.Options{})
	examples, _ := filepath.Abs("../../examples/debian")
	remote := []string{"FGIMG_REMOTE=" + reg.Addr + "/fgimg"}
	only := []string{"-only", "hadoop-cloud"}
	timed := func(b *testing.B, e *env, extra []string) time.Duration {
		start := time.Now()
		e.benchRun(b, extra, append([]string{"build", "-o", e.out}, only...)...)
		return time.Since(start)
	}
	// Caches live as long as the whole benchmark: noop-remote reuses
	// warm-remote's.
	fresh := func() *env {
		return &env{dir: examples, cache: b.TempDir(), out: filepath.Join(b.TempDir(), "out")}
	}
	var cold, warm time.Duration
	b.Run("cold", func(b *testing.B) {
		for range b.N {
			e := fresh()
			cold += timed(b, e, nil)
			e.benchRun(b, remote, append([]string{"push"}, only...)...)
		}
		cold /= time.Duration(b.N)
		b.ReportMetric(cold.Seconds(), "s/build")
	})
	var warmed *env
	b.Run("warm-remote", func(b *testing.B) {
		for range b.N {
			warmed = fresh()
			warm += timed(b, warmed, remote)
		}
		warm /= time.Duration(b.N)
		b.ReportMetric(warm.Seconds(), "s/build")
		b.ReportMetric(warm.Seconds()/cold.Seconds(), "×cold")
	})
	b.Run("noop-remote", func(b *testing.B) {
		var total time.Duration
		for range b.N {
			total += timed(b, warmed, remote)
		}
		b.ReportMetric(total.Seconds()/float64(b.N), "s/build")
	})
}

// BenchmarkNoopBuildRemote is BenchmarkNoopBuild (a 10-image pedigree
// with a target, everything cached) against a shared repository that
// has everything too: every stage is asked about, in one batch. The bar
// is 1 s.
func BenchmarkNoopBuildRemote(b *testing.B) {
	reg := registrytest.Start(b, registrytest.Options{})
	e := benchEnv(b, noopConfig(), nil)
	remote := []string{"FGIMG_REMOTE=" + reg.Addr + "/fgimg"}
	e.benchRun(b, remote, "build", "-o", e.out)
	b.ResetTimer()
	for range b.N {
		e.benchRun(b, remote, "build", "-o", e.out)
	}
}

// benchRun runs fgimg with args and more environment variables; it
// fails b when fgimg fails.
func (e *env) benchRun(b *testing.B, extraEnv []string, args ...string) {
	b.Helper()
	if out, err := e.command(context.Background(), extraEnv, args...).CombinedOutput(); err != nil {
		b.Fatalf("fgimg %v: %v\n%s", args, err, out)
	}
}
