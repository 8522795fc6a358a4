package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/testkit"
)

func TestRunOutputAndExitStatus(t *testing.T) {
	l := newLayout(t)
	ctx := context.Background()

	out, errOut, err := run(t, ctx, l.spec("echo hello; echo oops >&2; exit 3"))
	if out != "hello\n" || errOut != "oops\n" {
		t.Errorf("stdout %q, stderr %q; want \"hello\\n\", \"oops\\n\"", out, errOut)
	}
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 3 || ee.Signal != 0 {
		t.Fatalf("err = %#v; want *ExitError with code 3", err)
	}
	if err.Error() != "exit status 3" {
		t.Errorf("error text %q; want \"exit status 3\"", err)
	}

	if _, _, err := run(t, ctx, l.spec("true")); err != nil {
		t.Errorf("successful command: %v", err)
	}

	_, _, err = run(t, ctx, l.spec("kill -9 $$"))
	if !errors.As(err, &ee) || ee.Signal != syscall.SIGKILL || ee.Code != -1 {
		t.Errorf("killed command: err = %v; want *ExitError with SIGKILL", err)
	}

	s := l.spec("")
	s.Args = []string{"sh", "-c", "echo $0 found"} // looked up in PATH inside the root
	if out, _, err := run(t, ctx, s); err != nil || out != "sh found\n" {
		t.Errorf("command name without a slash: out %q, err %v", out, err)
	}

	s.Args = []string{"no-such-command"}
	if _, _, err := run(t, ctx, s); err == nil || !strings.Contains(err.Error(), "no-such-command: command not found") {
		t.Errorf("missing command: err = %v; want a command-not-found error", err)
	}
}

func TestRunStdin(t *testing.T) {
	l := newLayout(t)
	s := l.spec("cat")
	s.Stdin = strings.NewReader("from stdin\n")
	out, _, err := run(t, context.Background(), s)
	if err != nil || out != "from stdin\n" {
		t.Errorf("out %q, err %v; want the input echoed", out, err)
	}
}

func TestRunWritesLandInUpper(t *testing.T) {
	l := newLayout(t)
	// l1 sits on top of l0.
	writeFile(t, l.p("l1/etc/shared"), "from l1\n")
	writeFile(t, l.p("l1/etc/top"), "top\n")
	writeFile(t, l.p("l0/etc/shared"), "from l0\n")
	s := l.spec("cat /etc/shared; echo new > /newfile; echo changed >> /etc/lowerfile; rm /etc/top")
	s.Lower = []string{"l1", "l0"}
	out, errOut, err := run(t, context.Background(), s)
	if err != nil {
		t.Fatalf("%v; stderr: %s", err, errOut)
	}
	if out != "from l1\n" {
		t.Errorf("topmost lower should win: read %q", out)
	}
	if got := readFile(t, l.p("upper/newfile")); got != "new\n" {
		t.Errorf("upper/newfile = %q", got)
	}
	if got := readFile(t, l.p("upper/etc/lowerfile")); got != "lower\nchanged\n" {
		t.Errorf("upper/etc/lowerfile = %q", got)
	}
	if got := readFile(t, l.p("l0/etc/lowerfile")); got != "lower\n" {
		t.Errorf("lower changed: l0/etc/lowerfile = %q", got)
	}
	if _, err := os.Stat(l.p("l0/newfile")); !os.IsNotExist(err) {
		t.Errorf("new file appeared in the lower dir: %v", err)
	}
	if _, err := os.Stat(l.p("l1/etc/top")); err != nil {
		t.Errorf("deleting removed the lower file: %v", err)
	}
	var st syscall.Stat_t
	if err := syscall.Lstat(l.p("upper/etc/top"), &st); err != nil || st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 0 {
		t.Errorf("upper/etc/top should be a whiteout (char 0/0): %v, mode %o", err, st.Mode)
	}
}

func TestRunEnvironment(t *testing.T) {
	l := newLayout(t)
	t.Setenv("FGIMG_SANDBOX_TEST_LEAK", "leaked")
	s := l.spec("env")
	s.Env = []string{"FOO=bar", "LANG=en_US.UTF-8"}
	out, _, err := run(t, context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	want := map[string]string{"PATH": StandardPath, "HOME": "/root", "LANG": "en_US.UTF-8", "FOO": "bar"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s=%q; want %q", k, got[k], v)
		}
	}
	// Besides ours, only what the shell itself exports.
	for k := range got {
		if _, ok := want[k]; !ok && k != "PWD" && k != "SHLVL" {
			t.Errorf("unexpected variable %s=%q in the command's environment", k, got[k])
		}
	}

	if env := Environment(nil); !slices.Equal(env, []string{"PATH=" + StandardPath, "HOME=/root", "LANG=C.UTF-8"}) {
		t.Errorf("Environment(nil) = %q", env)
	}
}

func TestRunNamespacesAndDevices(t *testing.T) {
	l := newLayout(t)
	script := `
echo pid=$$
echo init=$(tr '\0' ' ' < /proc/1/cmdline)
echo procs=$(ls /proc | grep -c '^[0-9]')
echo hostname=$(hostname)
echo x > /dev/null && echo null=$(wc -c < /dev/null)
echo zero=$(head -c 5 /dev/zero | wc -c)
echo urandom=$(head -c 16 /dev/urandom | wc -c)
test -c /dev/full && test -c /dev/random && test -c /dev/tty && echo chardevs=ok
test -c /dev/pts/ptmx && test -e /dev/ptmx && echo pts=ok
touch /dev/shm/x && echo shm=ok
touch /sys/x 2>/dev/null || echo sys=readonly
test -d /sys/kernel && echo sys=mounted
`
	out, errOut, err := run(t, context.Background(), l.spec(script))
	if err != nil {
		t.Fatalf("%v; stderr: %s", err, errOut)
	}
	got := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		"", // pid, checked below
		"init=" + initArg0,
		"", // procs, checked below
		"hostname=fgimg",
		"null=0",
		"zero=5",
		"urandom=16",
		"chardevs=ok",
		"pts=ok",
		"shm=ok",
		"sys=readonly",
		"sys=mounted",
	}
	if len(got) != len(want) {
		t.Fatalf("output:\n%s\nstderr: %s", out, errOut)
	}
	for i := range want {
		// The init's threads take the first PIDs after 1; the
		// namespace holds only the init and the command's processes.
		if i == 0 || i == 2 {
			var n int
			max := 30 // a PID: after the init's threads
			if i == 2 {
				max = 5 // processes: init, sh, ls, grep
			}
			if _, err := fmt.Sscanf(got[i], strings.Split(got[i], "=")[0]+"=%d", &n); err != nil || n < 2 || n > max {
				t.Errorf("%q: want a small number from the sandbox's own PID namespace", got[i])
			}
			continue
		}
		if got[i] != want[i] {
			t.Errorf("got %q; want %q", got[i], want[i])
		}
	}
	if _, err := os.Stat(l.p("upper/dev/shm/x")); !os.IsNotExist(err) {
		t.Errorf("a file in /dev/shm reached the upper dir: %v", err)
	}
	if host, _ := os.Hostname(); host == Hostname {
		t.Errorf("the host's name changed to %q", host)
	}
}

func TestRunResolvConf(t *testing.T) {
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Skipf("the host has no /etc/resolv.conf: %v", err)
	}
	outside := t.TempDir() // a host directory a symlink could lead to

	cases := []struct {
		name    string
		prepare func(t *testing.T, l layout)
		// after checks the stage's dirs once the command has run.
		after func(t *testing.T, l layout)
	}{{
		name: "missing",
		after: func(t *testing.T, l layout) {
			if _, err := os.Lstat(l.p("upper/etc/resolv.conf")); !os.IsNotExist(err) {
				t.Errorf("upper/etc/resolv.conf left behind: %v", err)
			}
			// The copied-up /etc keeps the lower's modification time.
			up, err1 := os.Stat(l.p("upper/etc"))
			low, err2 := os.Stat(l.p("l0/etc"))
			if err1 == nil && (err2 != nil || !up.ModTime().Equal(low.ModTime())) {
				t.Errorf("upper/etc mtime %v, lower %v", up.ModTime(), low.ModTime())
			}
		},
	}, {
		name: "own file",
		prepare: func(t *testing.T, l layout) {
			writeFile(t, l.p("l0/etc/resolv.conf"), "nameserver 192.0.2.1\n")
		},
		after: func(t *testing.T, l layout) {
			if got := readFile(t, l.p("l0/etc/resolv.conf")); got != "nameserver 192.0.2.1\n" {
				t.Errorf("lower resolv.conf changed to %q", got)
			}
			if e := treeEntries(t, l.p("upper")); len(e) > 0 {
				t.Errorf("upper dir not empty: %q", e)
			}
		},
	}, {
		name: "dangling symlink",
		prepare: func(t *testing.T, l layout) {
			// Without /run in the lower, every directory of the stub is
			// new (an existing /run would be copied up and stay).
			if err := os.RemoveAll(l.p("l0/run")); err != nil {
				t.Fatal(err)
			}
			os.Symlink("../run/systemd/resolve/stub-resolv.conf", l.p("l0/etc/resolv.conf"))
		},
		after: func(t *testing.T, l layout) {
			if e := treeEntries(t, l.p("upper")); len(e) > 0 {
				t.Errorf("upper dir not empty: %q", e)
			}
		},
	}, {
		name: "symlink out of the root",
		prepare: func(t *testing.T, l layout) {
			os.Symlink(filepath.Join(outside, "resolv.conf"), l.p("l0/etc/resolv.conf"))
		},
		after: func(t *testing.T, l layout) {
			if e := treeEntries(t, outside); len(e) > 0 {
				t.Errorf("wrote outside the root: %q", e)
			}
			for _, e := range treeEntries(t, l.p("upper")) {
				if fi, err := os.Lstat(l.p("upper/" + e)); err != nil || !fi.IsDir() {
					t.Errorf("upper dir has %s", e)
				}
			}
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLayout(t)
			if c.prepare != nil {
				c.prepare(t, l)
			}
			out, errOut, err := run(t, context.Background(), l.spec("cat /etc/resolv.conf"))
			if err != nil {
				t.Fatalf("%v; stderr: %s", err, errOut)
			}
			if out != string(host) {
				t.Errorf("resolv.conf inside is %q; want the host's %q", out, host)
			}
			c.after(t, l)
		})
	}

	t.Run("read-only", func(t *testing.T) {
		l := newLayout(t)
		_, _, err := run(t, context.Background(), l.spec("echo nameserver 192.0.2.9 >> /etc/resolv.conf"))
		if err == nil {
			t.Error("writing resolv.conf inside succeeded")
		}
		if now, _ := os.ReadFile("/etc/resolv.conf"); string(now) != string(host) {
			t.Fatalf("the host's resolv.conf changed to %q", now)
		}
	})
}

func TestRunEmptyLowerUsesUpperAsRoot(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	busyboxRootfs(t, root)
	before, err := os.Stat(filepath.Join(root, "etc"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // so that a changed mtime shows
	out, errOut, err := run(t, context.Background(), Spec{
		Upper: root, Args: []string{"/bin/sh", "-c", "echo made > /made; cat /etc/lowerfile"},
	})
	if err != nil {
		t.Fatalf("%v; stderr: %s", err, errOut)
	}
	if out != "lower\n" {
		t.Errorf("out %q", out)
	}
	if got := readFile(t, filepath.Join(root, "made")); got != "made\n" {
		t.Errorf("made = %q", got)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc/resolv.conf")); !os.IsNotExist(err) {
		t.Errorf("resolv.conf stub left in the root: %v", err)
	}
	after, err := os.Stat(filepath.Join(root, "etc"))
	if err != nil || !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("/etc mtime %v, was %v", after.ModTime(), before.ModTime())
	}
	assertNoMounts(t, root)
}

func TestRunMissingMountPoints(t *testing.T) {
	l := newLayout(t)
	for _, d := range []string{"proc", "sys", "dev"} {
		if err := os.RemoveAll(l.p("l0/" + d)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, l.p("l0/etc/resolv.conf"), "")
	out, errOut, err := run(t, context.Background(), l.spec("test -e /proc/self && test -d /sys/kernel && test -c /dev/null && echo ok"))
	if err != nil || out != "ok\n" {
		t.Fatalf("out %q, err %v, stderr %s", out, err, errOut)
	}
	if e := treeEntries(t, l.p("upper")); len(e) > 0 {
		t.Errorf("mount point stubs left in the upper dir: %q", e)
	}
}

func TestRunMountsDoNotReachTheHost(t *testing.T) {
	l := newLayoutIn(t, sharedTmpfs(t))
	seen := make(chan struct{})
	s := l.spec("echo started; sleep 5")
	s.Stdout = &lineWatcher{line: "started", seen: seen}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, s) }()
	select {
	case <-seen:
	case err := <-errc:
		t.Fatalf("Run returned early: %v", err)
	}
	if m := hostMounts(t, l.p("upper")); len(m) > 0 {
		t.Errorf("the sandbox's mounts propagated to the host:\n%s", strings.Join(m, "\n"))
	}
	cancel()
	<-errc
	if m := hostMounts(t, l.p("upper")); len(m) > 0 {
		t.Errorf("mounts left on the host:\n%s", strings.Join(m, "\n"))
	}
}

func TestRunKillsBackgroundProcesses(t *testing.T) {
	l := newLayout(t)
	secs := uniqueSeconds()
	out, _, err := run(t, context.Background(), l.absSpec("sleep "+secs+" & echo started"))
	if err != nil || out != "started\n" {
		t.Fatalf("out %q, err %v", out, err)
	}
	// Immediately: the init reaps everything before it exits.
	if pids := testkit.ProcessesWithArg(secs); len(pids) > 0 {
		t.Errorf("background sleep still running: %v", pids)
	}
	assertNoSleep(t, secs)
	if m := mountsMentioning(t, l.p("upper")); len(m) > 0 {
		t.Errorf("mounts left:\n%s", strings.Join(m, "\n"))
	}
}

// lineWatcher is a writer that reports when a line is written.
type lineWatcher struct {
	line string
	seen chan struct{}
	buf  strings.Builder
}

func (w *lineWatcher) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if w.seen != nil && strings.Contains(w.buf.String(), w.line+"\n") {
		close(w.seen)
		w.seen = nil
	}
	return len(p), nil
}

func TestRunContextCancel(t *testing.T) {
	l := newLayout(t)
	bg, fg := uniqueSeconds(), uniqueSeconds()+"1"
	seen := make(chan struct{})
	s := l.absSpec("sleep " + bg + " & echo started; sleep " + fg)
	s.Stdout = &lineWatcher{line: "started", seen: seen}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, s) }()
	select {
	case <-seen:
	case err := <-errc:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("command did not start")
	}
	running := func() bool {
		return len(testkit.ProcessesWithArg(fg)) == 1 && len(mountsMentioning(t, l.p("upper"))) > 0
	}
	if !eventually(running) {
		t.Fatal("the command is not running with its overlay mounted")
	}
	cancel()
	start := time.Now()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v; want context.Canceled", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("Run took %v to return after cancel", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	// Immediately, not eventually: Run waits for them to go.
	for _, arg := range []string{bg, fg} {
		if pids := testkit.ProcessesWithArg(arg); len(pids) > 0 {
			t.Errorf("sleep %s still running: %v", arg, pids)
		}
		assertNoSleep(t, arg)
	}
	assertNoMounts(t, l.p("upper"))

	// A context already done runs nothing.
	_, _, err := run(t, ctx, l.spec("echo ran > /ran"))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("done context: err = %v", err)
	}
	if _, err := os.Stat(l.p("upper/ran")); !os.IsNotExist(err) {
		t.Error("the command ran despite a done context")
	}
}

func TestRunSurvivesNothingWhenFgimgIsKilled(t *testing.T) {
	l := newLayout(t)
	bg, fg := uniqueSeconds(), uniqueSeconds()+"2"
	cmd, out, stderr := startHelper(t, "run", l.absHelperSpec("sleep "+bg+" & echo started; sleep "+fg), nil)
	if line := readLine(t, out, stderr); line != "started" {
		t.Fatalf("helper said %q", line)
	}
	running := func() bool {
		return len(testkit.ProcessesWithArg(fg)) == 1 && len(mountsMentioning(t, l.p("upper"))) > 0
	}
	if !eventually(running) {
		t.Fatal("the command is not running with its overlay mounted")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	assertNoSleep(t, bg)
	assertNoSleep(t, fg)
	assertNoMounts(t, l.p("upper"))
	// Every writer of the helper's stdout is gone.
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, out); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("the helper's stdout is still held open")
	}
}

func TestIsolateMountOverlay(t *testing.T) {
	// On a shared mount, to check that the isolated process's mounts
	// stay private.
	l := newLayoutIn(t, sharedTmpfs(t))
	target := l.p("mnt")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	hs := l.helperSpec("")
	hs.Target = target
	cmd, out, stderr := startHelper(t, "isolate-mount", hs, nil)
	ns := readLine(t, out, stderr)
	own, _ := os.Readlink("/proc/self/ns/mnt")
	if ns == "ns "+own || !strings.HasPrefix(ns, "ns mnt:") {
		t.Errorf("helper reports mount namespace %q; the test's is %q", ns, own)
	}
	if line := readLine(t, out, stderr); line != `lowerfile "lower\n"` {
		t.Errorf("helper read %q through the overlay", line)
	}
	err := cmd.Wait()
	if cmd.ProcessState.ExitCode() != 7 {
		t.Fatalf("helper: %v (want exit status 7, propagated through Isolate); stderr: %s", err, stderr)
	}
	if got := readFile(t, l.p("upper/fromgo")); got != "go\n" {
		t.Errorf("upper/fromgo = %q", got)
	}
	if _, err := os.Stat(l.p("l0/fromgo")); !os.IsNotExist(err) {
		t.Errorf("write reached the lower dir: %v", err)
	}
	if e := treeEntries(t, target); len(e) > 0 {
		t.Errorf("the host sees the overlay at the target: %q", e)
	}
	assertNoMounts(t, target)
}

func TestIsolateKilledLeavesNoMount(t *testing.T) {
	l := newLayoutIn(t, sharedTmpfs(t))
	target := l.p("mnt")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	hs := l.helperSpec("")
	hs.Target = target
	cmd, out, stderr := startHelper(t, "isolate-hold", hs, nil)
	var child int
	if _, err := fmt.Sscanf(readLine(t, out, stderr), "mounted %d", &child); err != nil {
		t.Fatal(err)
	}
	if child == cmd.Process.Pid {
		t.Fatal("Isolate did not re-execute the program")
	}
	if len(mountsMentioning(t, target)) == 0 {
		t.Fatal("the overlay is not mounted in the isolated process")
	}
	if m := mountsMentioning(t, target); len(m) > 0 {
		for _, line := range m {
			if strings.HasPrefix(line, fmt.Sprintf("/proc/%d/", os.Getpid())) {
				t.Errorf("the mount is visible in the test's namespace: %s", line)
			}
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !eventually(func() bool { return dead(child) }) {
		t.Errorf("isolated process %d outlived its parent", child)
	}
	assertNoMounts(t, target)
}

func TestIsolateForwardsSIGTERM(t *testing.T) {
	requireRoot(t)
	cmd, out, stderr := startHelper(t, "isolate-term", helperSpec{}, nil)
	if line := readLine(t, out, stderr); line != "ready" {
		t.Fatalf("helper said %q", line)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 42 {
		t.Errorf("exit status %d; want 42 (SIGTERM forwarded, status propagated); stderr: %s", code, stderr)
	}
}

// TestIsolateRootless runs the test binary as nobody: Run must refuse
// before Isolate and work after it, in a user namespace.
func TestIsolateRootless(t *testing.T) {
	requireRoot(t)
	if err := userNSStatus(procSys); err != nil {
		t.Skipf("unprivileged user namespaces unavailable: %v", err)
	}
	const nobody = 65534
	// A world-accessible copy of the test binary and stage directory.
	base, err := os.MkdirTemp("", "fgimg-sandbox-rootless-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	l := layout{base: base}
	busyboxRootfs(t, l.p("l0"))
	for _, d := range []string{"upper", "work"} {
		if err := os.Mkdir(l.p(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Unprivileged fgimg unpacks layers itself, so it owns them; files
	// of users not mapped into the namespace could not be changed.
	for _, d := range []string{"l0", "upper", "work"} {
		err := filepath.Walk(l.p(d), func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, nobody, nobody)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	exe, _ := os.Executable()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.p("sandbox.test"), b, 0o755); err != nil {
		t.Fatal(err)
	}

	hs := l.helperSpec("echo uid=$(id -u) host=$(hostname); echo x > /written; cat /etc/lowerfile; grep 'Max processes' /proc/self/limits")
	spec, _ := json.Marshal(hs)
	cmd := exec.Command(l.p("sandbox.test"), "-test.run=^$")
	cmd.Env = []string{"PATH=/usr/bin:/bin", helperModeEnv + "=rootless", helperSpecEnv + "=" + string(spec)}
	cmd.Dir = base
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	outb, err := cmd.CombinedOutput()
	out := string(outb)
	if err != nil {
		t.Fatalf("rootless helper: %v\n%s", err, out)
	}
	if !strings.Contains(out, "before isolate: sandbox: running commands in a root filesystem needs root, or sandbox.Isolate") {
		t.Errorf("Run without root or isolation should say what is missing; output:\n%s", out)
	}
	if !strings.Contains(out, "uid=0 host=fgimg\nlower\n") {
		t.Errorf("command output:\n%s", out)
	}
	// Without root no cgroup can be made: RLIMIT_NPROC bounds the
	// command's processes instead.
	if want := regexp.MustCompile(`Max processes +` + strconv.Itoa(DefaultMaxProcesses) + ` +` + strconv.Itoa(DefaultMaxProcesses) + ` +processes`); !want.MatchString(out) {
		t.Errorf("a rootless command's processes are not bounded to %d:\n%s", DefaultMaxProcesses, out)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(l.p("upper/written"), &st); err != nil || st.Uid != nobody {
		t.Errorf("upper/written: %v, owner %d; want a file owned by %d", err, st.Uid, nobody)
	}
}
