package sandbox

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// sandboxInit returns the pid of the sandbox init this process started.
func sandboxInit(t *testing.T) int {
	t.Helper()
	return childWithArg0(t, initArg0)
}

// childWithArg0 returns the pid of this process's child whose argv[0]
// has the given base name.
func childWithArg0(t *testing.T, arg0 string) int {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		cmdline, err := os.ReadFile(d + "/cmdline")
		first, _, _ := strings.Cut(string(cmdline), "\x00")
		if err != nil || filepath.Base(first) != arg0 {
			continue
		}
		stat, err := os.ReadFile(d + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) {
			pid, _ := strconv.Atoi(filepath.Base(d))
			return pid
		}
	}
	t.Fatalf("no %s among this process's children", arg0)
	return 0
}

func TestRunShiftsIDsToAnUnprivilegedRange(t *testing.T) {
	l := newLayout(t)
	uids, gids := shiftRanges()
	wantMap := fmt.Sprintf("0 %d %d", uids.host, uids.size)

	h := startHeld(l.absSpec(`cat /proc/self/uid_map; touch /created; chown 1000:1000 /etc/lowerfile; echo ready; read x || true`))
	lines := h.lines
	if got := strings.Join(strings.Fields(<-lines), " "); got != wantMap {
		t.Errorf("the command's uid_map is %q; want %q (image root is host uid %d)", got, wantMap, uids.host)
	}
	if got := <-lines; got != "ready" {
		t.Fatalf("command said %q; stderr: %s", got, h.stderr.String())
	}
	init := sandboxInit(t)
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", init))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(strings.Fields(string(b)), " "); got != wantMap {
		t.Errorf("/proc/%d/uid_map = %q; want %q", init, got, wantMap)
	}
	// Seen from the host while mounted, the image's root owns nothing
	// of the host's: its files belong to the shifted ids.
	for name, want := range map[string][2]uint32{
		"created":       {uids.host, gids.host},
		"bin/busybox":   {uids.host, gids.host},
		"etc/lowerfile": {uids.host + 1000, gids.host + 1000},
	} {
		var st unix.Stat_t
		if err := unix.Lstat(fmt.Sprintf("/proc/%d/root/%s", init, name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("on the host, /%s is owned by %d:%d; want %d:%d", name, st.Uid, st.Gid, want[0], want[1])
		}
	}
	if err := h.finish(); err != nil {
		t.Fatal(err)
	}
	// The layer keeps the image's own ids.
	for name, want := range map[string]uint32{"created": 0, "etc/lowerfile": 1000} {
		var st unix.Stat_t
		if err := unix.Lstat(l.p("upper/"+name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != want || st.Gid != want {
			t.Errorf("upper/%s is owned by %d:%d; want %d:%d", name, st.Uid, st.Gid, want, want)
		}
	}
	assertNoMounts(t, l.p("upper"))
}

// held is a command that runs until finish closes its stdin.
type held struct {
	lines  chan string // its stdout, line by line
	stderr *strings.Builder
	errc   chan error
	feed   *io.PipeWriter
}

// startHeld starts s, whose command reads its stdin to hold on.
func startHeld(s Spec) *held {
	stdin, feed := io.Pipe()
	h := &held{lines: make(chan string, 16), stderr: &strings.Builder{}, errc: make(chan error, 1), feed: feed}
	s.Stdin, s.Stdout, s.Stderr = stdin, &lineCollector{lines: h.lines}, h.stderr
	go func() { h.errc <- Run(context.Background(), s) }()
	return h
}

// finish lets the command end and returns Run's error.
func (h *held) finish() error {
	h.feed.Close()
	if err := <-h.errc; err != nil {
		return fmt.Errorf("%w; stderr: %s", err, h.stderr.String())
	}
	return nil
}

// lineCollector sends each line written to it.
type lineCollector struct {
	lines   chan string
	partial string
}

func (c *lineCollector) Write(p []byte) (int, error) {
	c.partial += string(p)
	for {
		i := strings.IndexByte(c.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		c.lines <- c.partial[:i]
		c.partial = c.partial[i+1:]
	}
}

func TestSubordinateRange(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "subuid")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, c := range []struct {
		file string
		want idRange
		ok   bool
	}{
		{"alice:100000:65536\nroot:200000:65536\n", idRange{200000, 65536}, true},
		{"0:300000:131072\n", idRange{300000, 65536}, true},
		{"root:100000:1000\nroot:500000:70000\n", idRange{500000, 65536}, true}, // first big enough
		{"root:0:65536\n", idRange{}, false},                                    // would map onto host root
		{"root:x:65536\nalice:100000:65536\n", idRange{}, false},
	} {
		got, ok := subordinateRange(write(c.file))
		if got != c.want || ok != c.ok {
			t.Errorf("%q: got %v %v; want %v %v", c.file, got, ok, c.want, c.ok)
		}
	}
	if _, ok := subordinateRange(filepath.Join(dir, "missing")); ok {
		t.Error("a missing file gave a range")
	}
}

// TestRunShiftsIDsOnMountOverlay runs a command on a root filesystem
// MountOverlay mounted (as the engine does for a stage), between writes
// from Go: the command gets shifted ids, and Go and the command see each
// other's changes.
func TestRunShiftsIDsOnMountOverlay(t *testing.T) {
	l := newLayoutIn(t, sharedTmpfs(t))
	target := l.p("mnt")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	uids, _ := shiftRanges()
	hs := l.helperSpec(`cat /proc/self/uid_map; cat /fromgo; echo cmd > /fromcmd; chown 1000:1000 /fromcmd; rm /etc/lowerfile`)
	hs.Target = target
	cmd, out, stderr := startHelper(t, "isolate-run", hs, nil)
	if got, want := strings.Join(strings.Fields(readLine(t, out, stderr)), " "), fmt.Sprintf("0 %d %d", uids.host, uids.size); got != want {
		t.Errorf("the command's uid_map is %q; want %q", got, want)
	}
	if got := readLine(t, out, stderr); got != "go" {
		t.Errorf("the command read /fromgo as %q", got)
	}
	if got := readLine(t, out, stderr); got != `go reads fromcmd "cmd\n", lowerfile removed true` {
		t.Errorf("after the command: %s", got)
	}
	err := cmd.Wait()
	if cmd.ProcessState.ExitCode() != 7 {
		t.Fatalf("helper: %v; stderr: %s", err, stderr)
	}
	for name, want := range map[string]uint32{"fromgo": 0, "fromcmd": 1000, "aftergo": 0} {
		var st unix.Stat_t
		if err := unix.Lstat(l.p("upper/"+name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != want || st.Gid != want {
			t.Errorf("upper/%s is owned by %d:%d; want %d:%d", name, st.Uid, st.Gid, want, want)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(l.p("upper/etc/lowerfile"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper/etc/lowerfile is not an overlay whiteout: %v %o", err, st.Mode)
	}
	assertNoMounts(t, target)
}

func TestRunPastaRunsAsTheShiftedRoot(t *testing.T) {
	l := newLayout(t)
	uids, _ := shiftRanges()
	s := l.absSpec(`echo ready; read x || true`)
	s.Network = true
	h := startHeld(s)
	select {
	case <-h.lines:
	case err := <-h.errc:
		t.Fatalf("%v; stderr: %s", err, h.stderr.String())
	}
	pasta := childWithArg0(t, "pasta")
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pasta))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 5 && f[0] == "Uid:" {
			for _, id := range f[1:] {
				if id != strconv.Itoa(int(uids.host)) {
					t.Errorf("pasta runs as %s; want the shifted root %d in every field", line, uids.host)
					break
				}
			}
		}
	}
	if err := h.finish(); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveStaleRootDirs(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	// A pid that is not running: the highest possible one is rarely used.
	dead := "4194303"
	if syscall.Kill(4194303, 0) != syscall.ESRCH {
		t.Skip("pid 4194303 exists")
	}
	stale := filepath.Join(os.TempDir(), shiftedRootPrefix("/x/upper")+dead+"-123")
	live := filepath.Join(os.TempDir(), shiftedRootPrefix("/x/upper")+strconv.Itoa(os.Getppid())+"-456")
	other := filepath.Join(os.TempDir(), "fgimg-root-unrelated")
	for _, d := range []string{stale, live, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	removeStaleRootDirs()
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("the mount point of a dead fgimg is still there: %v", err)
	}
	for _, d := range []string{live, other} {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("%s was removed: %v", d, err)
		}
	}
}
