package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/testkit"
)

// TestMain lets the test binary serve as the sandbox init (Init) and as
// a stand-in for the fgimg program in tests that kill or isolate it.
func TestMain(m *testing.M) {
	Init()
	if mode := os.Getenv(helperModeEnv); mode != "" {
		os.Exit(helperMain(mode))
	}
	os.Exit(m.Run())
}

const (
	helperModeEnv = "FGIMG_SANDBOX_TEST_HELPER"
	helperSpecEnv = "FGIMG_SANDBOX_TEST_SPEC"
)

// helperSpec is what a helper process is told to do.
type helperSpec struct {
	Dir, Upper, Work, Target string
	Lower                    []string
	Args                     []string
}

// helperMain plays a small fgimg: each mode is one scenario.
func helperMain(mode string) int {
	var hs helperSpec
	if err := json.Unmarshal([]byte(os.Getenv(helperSpecEnv)), &hs); err != nil {
		fmt.Fprintln(os.Stderr, "helper: bad spec:", err)
		return 2
	}
	spec := Spec{Dir: hs.Dir, Lower: hs.Lower, Upper: hs.Upper, Work: hs.Work, Args: hs.Args, Stdout: os.Stdout, Stderr: os.Stderr}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	switch mode {
	case "run": // run a command; the test kills this process midway
		if err := Run(context.Background(), spec); err != nil {
			return fail(err)
		}
		return 0

	case "isolate-mount": // mount from Go, write through the mount, exit 7
		if err := Isolate(); err != nil {
			return fail(err)
		}
		ns, _ := os.Readlink("/proc/self/ns/mnt")
		fmt.Println("ns", ns)
		unmount, err := MountOverlay(hs.Lower, hs.Dir, hs.Upper, hs.Work, hs.Target)
		if err != nil {
			return fail(err)
		}
		b, err := os.ReadFile(filepath.Join(hs.Target, "etc/lowerfile"))
		if err != nil {
			return fail(err)
		}
		fmt.Printf("lowerfile %q\n", b)
		if err := os.WriteFile(filepath.Join(hs.Target, "fromgo"), []byte("go\n"), 0o644); err != nil {
			return fail(err)
		}
		if err := unmount(); err != nil {
			return fail(err)
		}
		return 7

	case "isolate-run": // mount from Go, run a command on the mount, write from Go again
		if err := Isolate(); err != nil {
			return fail(err)
		}
		unmount, err := MountOverlay(hs.Lower, hs.Dir, hs.Upper, hs.Work, hs.Target)
		if err != nil {
			return fail(err)
		}
		if err := os.WriteFile(filepath.Join(hs.Target, "fromgo"), []byte("go\n"), 0o644); err != nil {
			return fail(err)
		}
		if err := Run(context.Background(), Spec{Upper: hs.Target, Args: hs.Args, Stdout: os.Stdout, Stderr: os.Stderr}); err != nil {
			return fail(err)
		}
		b, err := os.ReadFile(filepath.Join(hs.Target, "fromcmd"))
		if err != nil {
			return fail(err)
		}
		_, err = os.Stat(filepath.Join(hs.Target, "etc/lowerfile"))
		fmt.Printf("go reads fromcmd %q, lowerfile removed %v\n", b, os.IsNotExist(err))
		if err := os.WriteFile(filepath.Join(hs.Target, "aftergo"), []byte("go\n"), 0o644); err != nil {
			return fail(err)
		}
		if err := unmount(); err != nil {
			return fail(err)
		}
		return 7

	case "isolate-hold": // mount, report, and wait to be killed
		if err := Isolate(); err != nil {
			return fail(err)
		}
		if _, err := MountOverlay(hs.Lower, hs.Dir, hs.Upper, hs.Work, hs.Target); err != nil {
			return fail(err)
		}
		fmt.Println("mounted", os.Getpid())
		time.Sleep(time.Minute)
		return 0

	case "isolate-term": // wait for a forwarded SIGTERM, exit 42
		if err := Isolate(); err != nil {
			return fail(err)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		fmt.Println("ready")
		select {
		case <-ctx.Done():
			return 42
		case <-time.After(time.Minute):
			return 0
		}

	case "rootless": // as an ordinary user: Run fails, then works after Isolate
		if os.Geteuid() != 0 { // not yet re-executed by Isolate
			err := Run(context.Background(), spec)
			fmt.Printf("before isolate: %v\n", err)
		}
		if err := Isolate(); err != nil {
			return fail(err)
		}
		if err := Run(context.Background(), spec); err != nil {
			return fail(err)
		}
		return 0
	}
	return fail(fmt.Errorf("unknown mode %q", mode))
}

// startHelper starts the test binary as a helper in the given mode; its
// stdout is returned as a line reader.
func startHelper(t *testing.T, mode string, hs helperSpec, attr *syscall.SysProcAttr) (*exec.Cmd, *bufio.Reader, *bytes.Buffer) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := json.Marshal(hs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperModeEnv+"="+mode, helperSpecEnv+"="+string(spec))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = attr
	// Should a killed helper leave processes holding its stderr, Wait
	// must not hang: the test reports them instead.
	cmd.WaitDelay = time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, bufio.NewReader(out), &stderr
}

// readLine reads one line from r, failing the test after a timeout.
func readLine(t *testing.T, r *bufio.Reader, stderr *bytes.Buffer) string {
	t.Helper()
	type result struct {
		line string
		err  error
	}
	c := make(chan result, 1)
	go func() {
		l, err := r.ReadString('\n')
		c <- result{l, err}
	}()
	select {
	case res := <-c:
		if res.err != nil {
			t.Fatalf("reading helper output: %v (got %q); stderr: %s", res.err, res.line, stderr)
		}
		return strings.TrimSuffix(res.line, "\n")
	case <-time.After(10 * time.Second):
		t.Fatalf("no output from helper; stderr: %s", stderr)
	}
	return ""
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (run the tests as root)")
	}
}

// busyboxRootfs fills dir with testkit's busybox root filesystem and
// /etc/lowerfile containing "lower\n".
func busyboxRootfs(t *testing.T, dir string) {
	t.Helper()
	testkit.BusyboxRootfs(t, dir)
	writeFile(t, filepath.Join(dir, "etc/lowerfile"), "lower\n")
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// layout is a stage directory: base/l0 is the busybox root filesystem,
// base/upper and base/work are empty.
type layout struct {
	base string
}

func newLayout(t *testing.T) layout {
	t.Helper()
	requireRoot(t)
	return newLayoutIn(t, t.TempDir())
}

func newLayoutIn(t *testing.T, base string) layout {
	t.Helper()
	l := layout{base: base}
	busyboxRootfs(t, l.p("l0"))
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(l.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return l
}

func (l layout) p(rel string) string { return filepath.Join(l.base, rel) }

// absSpec runs script with /bin/sh over lower l0, with absolute paths:
// the mount options then name the stage directory, so that leftover
// mounts can be found in /proc/*/mountinfo. (The mount point itself is /
// in the sandbox's namespace.)
func (l layout) absSpec(script string) Spec {
	return Spec{Lower: []string{l.p("l0")}, Upper: l.p("upper"), Work: l.p("work"), Args: []string{"/bin/sh", "-c", script}}
}

// spec runs script with /bin/sh over lower l0, with relative paths.
func (l layout) spec(script string) Spec {
	return Spec{Dir: l.base, Lower: []string{"l0"}, Upper: "upper", Work: "work", Args: []string{"/bin/sh", "-c", script}}
}

func (l layout) helperSpec(script string) helperSpec {
	return helperSpec{Dir: l.base, Lower: []string{"l0"}, Upper: "upper", Work: "work", Args: []string{"/bin/sh", "-c", script}}
}

func (l layout) absHelperSpec(script string) helperSpec {
	s := l.absSpec(script)
	return helperSpec{Lower: s.Lower, Upper: s.Upper, Work: s.Work, Args: s.Args}
}

// run runs s and returns its output.
func run(t *testing.T, ctx context.Context, s Spec) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	s.Stdout, s.Stderr = &o, &e
	err = Run(ctx, s)
	return o.String(), e.String(), err
}

// uniqueSeconds returns a sleep duration no other test or program uses,
// so that the process can be found by its arguments.
func uniqueSeconds() string {
	return strconv.Itoa(4000000 + os.Getpid()*10 + int(time.Now().UnixNano()%10))
}

// mountsMentioning lists the mountinfo lines, of every process's mount
// namespace, that mention path.
func mountsMentioning(t *testing.T, path string) []string {
	t.Helper()
	// Per thread: Run mounts a shifted root in a thread's own namespace.
	files, err := filepath.Glob("/proc/[0-9]*/task/[0-9]*/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// A command's root with shifted ids is mounted over idmapped
	// mounts named by file descriptor, on a directory named after path.
	shifted := shiftedRootPrefix(path)
	var lines []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, path) || strings.Contains(l, shifted) {
				lines = append(lines, f+": "+l)
			}
		}
	}
	return lines
}

// eventually polls cond for up to 5 seconds.
func eventually(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assertNoSleep checks that no process "sleep secs" (secs from
// uniqueSeconds) is left; should one be, it fails the test and kills it.
func assertNoSleep(t *testing.T, secs string) {
	t.Helper()
	if !eventually(func() bool { return len(testkit.ProcessesWithArg(secs)) == 0 }) {
		pids := testkit.ProcessesWithArg(secs)
		t.Errorf("processes \"sleep %s\" left: %v", secs, pids)
		for _, pid := range pids {
			if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); string(b) == "sleep\x00"+secs+"\x00" {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// assertNoMounts checks that no mount namespace has a mount mentioning
// path.
func assertNoMounts(t *testing.T, path string) {
	t.Helper()
	if !eventually(func() bool { return len(mountsMentioning(t, path)) == 0 }) {
		t.Errorf("mounts of %s left:\n%s", path, strings.Join(mountsMentioning(t, path), "\n"))
	}
}

// treeEntries lists the paths below dir.
func treeEntries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// dead reports whether process pid has exited (a zombie counts: it has
// no memory, files or mounts left, only an entry for its parent to reap).
func dead(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

// sharedTmpfs mounts a tmpfs with shared propagation, like / on systemd
// hosts: a mount below it made in a copied mount namespace that is not
// private would show up on the host too.
func sharedTmpfs(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	if err := syscall.Mount("", dir, "", syscall.MS_SHARED, ""); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hostMounts lists this process's mountinfo lines mentioning path.
func hostMounts(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, path) {
			lines = append(lines, l)
		}
	}
	return lines
}
