package testkit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/hosttool"
)

// RequireTools is the environment variable that turns a missing host
// tool from a skip into a failure; CI=true does the same. .ci/run sets it.
const RequireTools = "FGIMG_TEST_REQUIRE_TOOLS"

// ToolsRequired reports whether a test that misses a host tool must fail
// (in CI, or with FGIMG_TEST_REQUIRE_TOOLS=1) rather than skip.
func ToolsRequired() bool {
	v := os.Getenv(RequireTools)
	return os.Getenv("CI") == "true" || (v != "" && v != "0")
}

// Need checks that the host has each tool (a program name) or file (an
// absolute path) and returns the tools' paths, in order (a file's own
// path). When one is missing, the test skips, saying which package to
// install (`make deps` installs them all); under ToolsRequired it fails.
func Need(tb testing.TB, names ...string) []string {
	tb.Helper()
	paths := make([]string, len(names))
	for i, n := range names {
		var err error
		if strings.HasPrefix(n, "/") {
			paths[i], err = n, hosttool.NeedFile(n)
		} else {
			paths[i], err = hosttool.Find(n)
		}
		if err != nil {
			Missing(tb, err)
		}
	}
	return paths
}

// Missing ends a test whose host tool is missing, as Need does, with err
// saying what is missing and which package provides it.
func Missing(tb testing.TB, err error) {
	tb.Helper()
	if ToolsRequired() {
		tb.Fatalf("%v (make deps installs it; %s or CI=true makes a missing tool an error)", err, RequireTools)
	}
	tb.Skipf("%v (make deps installs it)", err)
}

// HostTools makes dir the only place hosttool.Find looks for tools (PATH
// and hosttool.StandardDirs) until the test ends.
func HostTools(tb testing.TB, dir string) {
	tb.Helper()
	tb.Setenv("PATH", dir)
	old := hosttool.StandardDirs
	hosttool.StandardDirs = []string{dir}
	tb.Cleanup(func() { hosttool.StandardDirs = old })
}

// HostOS makes hosttool read osRelease as the host's /etc/os-release
// until the test ends.
func HostOS(tb testing.TB, osRelease string) {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "os-release")
	if err := os.WriteFile(p, []byte(osRelease), 0o644); err != nil {
		tb.Fatal(err)
	}
	old := hosttool.OSRelease
	hosttool.OSRelease = p
	tb.Cleanup(func() { hosttool.OSRelease = old })
}
