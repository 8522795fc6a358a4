package sandbox

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/testkit"
)

// The escape of issue 13: a command made a device node for the host's
// disk, mounted it and wrote a file on the host.
func TestRunCannotMountTheHostsDisk(t *testing.T) {
	l := newLayout(t)
	hostDir := t.TempDir()
	var st unix.Stat_t
	if err := unix.Stat(hostDir, &st); err != nil {
		t.Fatal(err)
	}
	// hostDir's path inside its file system, were that mounted at /mnt/h.
	rel := hostDir
	if mp := mountPointOf(t, hostDir); mp != "/" {
		rel = strings.TrimPrefix(hostDir, mp)
	}
	script := fmt.Sprintf(`busybox mknod /tmp/disk b %d %d && echo mknod=ok
mkdir -p /mnt/h
busybox mount -t ext4 /tmp/disk /mnt/h && echo mount=ok
echo x > /mnt/h%s/ESCAPED && echo write=ok
true`, unix.Major(st.Dev), unix.Minor(st.Dev), rel)
	out, errOut, err := run(t, context.Background(), l.spec(script))
	if err != nil {
		t.Fatalf("%v; stderr: %s", err, errOut)
	}
	if strings.Contains(out, "=ok") {
		t.Errorf("the command got further than it may: %q; stderr: %s", out, errOut)
	}
	if !strings.Contains(errOut, "mknod: /tmp/disk: Operation not permitted") {
		t.Errorf("stderr %q; want mknod refused", errOut)
	}
	if _, err := os.Stat(filepath.Join(hostDir, "ESCAPED")); err == nil {
		t.Fatal("the command wrote a file on the host's disk")
	}
}

func mountPointOf(t *testing.T, p string) string {
	t.Helper()
	best := "/"
	for _, l := range strings.Split(readFile(t, "/proc/self/mountinfo"), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (p == f[4] || strings.HasPrefix(p, f[4]+"/")) && len(f[4]) > len(best) {
			best = f[4]
		}
	}
	return best
}

func TestRunConfinement(t *testing.T) {
	l := newLayout(t)
	pattern := readFile(t, "/proc/sys/kernel/core_pattern")
	script := `
grep -E '^(CapEff|CapBnd|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status
busybox mount -t proc proc /tmp && echo proc-mount=ok
busybox mount -t sysfs sysfs /tmp && echo sysfs-mount=ok
busybox mount -o remount,rw /sys && echo sys-remount=ok
busybox mount -t tmpfs tmpfs /tmp && echo tmpfs-mount=ok
# Writing back the value it has proves writability without changing the host.
p=$(cat /proc/sys/kernel/core_pattern); echo "$p" > /proc/sys/kernel/core_pattern && echo core_pattern=written
test -w /proc/sysrq-trigger && echo sysrq=writable
echo kcore=$(head -c 16 /proc/kcore | wc -c)
echo keys=$(cat /proc/keys | wc -c)
busybox unshare -U -r true && echo unshare=ok
busybox nsenter -t 1 -m true 2>/dev/null; true
echo userns=$(readlink /proc/self/ns/user)
ls /dev | sort | tr '\n' ' '; echo
`
	out, errOut, err := run(t, context.Background(), l.spec(script))
	if err != nil {
		t.Fatalf("%v; stderr: %s", err, errOut)
	}
	want := fmt.Sprintf("%016x", KeptCapabilities())
	for _, field := range []string{"CapEff", "CapBnd", "CapPrm"} {
		if !strings.Contains(out, field+":\t"+want+"\n") {
			t.Errorf("%s is not the bounded set %s:\n%s", field, want, out)
		}
	}
	for _, line := range []string{"NoNewPrivs:\t1", "Seccomp:\t2", "kcore=0", "keys=0"} {
		if !strings.Contains(out, line+"\n") {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	if strings.Contains(out, "=ok") || strings.Contains(out, "=written") || strings.Contains(out, "=writable") {
		t.Errorf("a forbidden operation succeeded:\n%s\nstderr: %s", out, errOut)
	}
	if got := readFile(t, "/proc/sys/kernel/core_pattern"); got != pattern {
		t.Fatalf("the host's core_pattern changed from %q to %q", pattern, got)
	}
	host, _ := os.Readlink("/proc/self/ns/user")
	if strings.Contains(out, "userns="+host+"\n") {
		t.Errorf("the command runs in the host's user namespace %s", host)
	}
	lastLine := strings.TrimSpace(out[strings.LastIndex(strings.TrimRight(out, "\n"), "\n")+1:])
	if lastLine != "fd full null ptmx pts random shm stderr stdin stdout tty urandom zero" {
		t.Errorf("/dev holds %q; want only the nodes a build needs", lastLine)
	}
}

// Files the image's root and other users create keep their owners and
// modes in the upper directory, from which the layer is read.
func TestRunOwnershipInUpper(t *testing.T) {
	l := newLayout(t)
	script := `touch /root-file /user-file && chown 0:0 /root-file && chown 1000:1000 /user-file && chmod 4755 /root-file && chmod 2755 /user-file`
	if _, errOut, err := run(t, context.Background(), l.spec(script)); err != nil {
		t.Fatalf("%v; stderr: %s", err, errOut)
	}
	for _, c := range []struct {
		name     string
		uid, gid uint32
		mode     uint32
	}{{"root-file", 0, 0, unix.S_ISUID | 0o755}, {"user-file", 1000, 1000, unix.S_ISGID | 0o755}} {
		var st unix.Stat_t
		if err := unix.Lstat(l.p("upper/"+c.name), &st); err != nil {
			t.Fatal(err)
		}
		if st.Uid != c.uid || st.Gid != c.gid || st.Mode&0o7777 != c.mode {
			t.Errorf("%s: owner %d:%d mode %o; want %d:%d %o", c.name, st.Uid, st.Gid, st.Mode&0o7777, c.uid, c.gid, c.mode)
		}
	}
}

// hostServer listens on the host's 127.0.0.1 and counts connections.
func hostServer(t *testing.T) (port int, accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	n := make(chan int, 1)
	n <- 0
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n <- <-n + 1
			c.Write([]byte("host-secret\n"))
			c.Close()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, func() int { v := <-n; n <- v; return v }
}

func TestRunNetworkIsolation(t *testing.T) {
	l := newLayout(t)
	port, accepted := hostServer(t)
	script := fmt.Sprintf(`
echo lo=$(cat /sys/class/net/lo/operstate)
ls /sys/class/net | tr '\n' ' '; echo
busybox nc -w 2 127.0.0.1 %d </dev/null
busybox nc -w 2 1.1.1.1 80 </dev/null 2>&1 | grep -q 'unreachable' && echo outside=unreachable
true`, port)
	out, errOut, err := run(t, context.Background(), l.spec(script))
	if err != nil {
		t.Fatalf("%v; stderr: %s", err, errOut)
	}
	if strings.Contains(out, "host-secret") || accepted() != 0 {
		t.Errorf("the command reached a service on the host's loopback:\n%s", out)
	}
	if !strings.Contains(out, "outside=unreachable") {
		t.Errorf("a command without the network is not told the network is unreachable:\n%s\nstderr: %s", out, errOut)
	}
	if !strings.Contains(out, "\nlo \n") {
		t.Errorf("network interfaces other than lo:\n%s", out)
	}
}

func TestRunWithNetwork(t *testing.T) {
	l := newLayout(t)
	port, accepted := hostServer(t)
	// The gateway pasta configures is the host's; with --no-map-gw it is
	// not a way to the host's loopback either.
	script := fmt.Sprintf(`
gw=$(busybox ip route | busybox awk '/^default/ {print $3; exit}')
echo gw=$gw
busybox nc -w 2 127.0.0.1 %[1]d </dev/null
busybox nc -w 2 "$gw" %[1]d </dev/null
busybox wget -q -O - http://deb.debian.org/debian/dists/bookworm/Release | grep -q "^Codename: bookworm" && echo mirror=reachable
true`, port)
	s := l.spec(script)
	s.Network = true
	out, errOut, err := run(t, context.Background(), s)
	if err != nil {
		t.Fatalf("%v; stderr: %s", err, errOut)
	}
	if !strings.Contains(out, "gw=") || strings.Contains(out, "gw=\n") {
		t.Errorf("no default route with the network:\n%s\nstderr: %s", out, errOut)
	}
	if strings.Contains(out, "host-secret") || accepted() != 0 {
		t.Errorf("the command reached a service on the host's loopback:\n%s", out)
	}
	if !strings.Contains(out, "mirror=reachable") {
		t.Errorf("the Debian mirror is not reachable with the network:\n%s\nstderr: %s", out, errOut)
	}
}

func TestRunProcessLimit(t *testing.T) {
	l := newLayout(t)
	s := l.spec(`bomb() { bomb | bomb & }; bomb; sleep 60`)
	s.MaxProcesses = 50
	start := time.Now()
	_, _, err := run(t, context.Background(), s)
	var pl *ProcessLimitError
	if !errors.As(err, &pl) || pl.Limit != 50 {
		t.Fatalf("err = %v; want a *ProcessLimitError for 50 processes", err)
	}
	if !strings.Contains(err.Error(), "limit of 50 processes") {
		t.Errorf("error %q does not name the limit", err)
	}
	if !strings.Contains(err.Error(), "run fewer jobs at once") {
		t.Errorf("error %q does not say what to do", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("the fork bomb ran for %s", d)
	}
}

// runBPF interprets the subset of classic BPF seccompProgram emits on
// a seccomp_data of nr, arch and args[0].
func runBPF(t *testing.T, prog []unix.SockFilter, nr, arch uint32, arg0 uint64) uint32 {
	t.Helper()
	var data [64]byte
	binary.LittleEndian.PutUint32(data[offNr:], nr)
	binary.LittleEndian.PutUint32(data[offArch:], arch)
	binary.LittleEndian.PutUint64(data[offArg0:], arg0)
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K:
			var cond bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				cond = acc == in.K
			case unix.BPF_JGE:
				cond = acc >= in.K
			case unix.BPF_JSET:
				cond = acc&in.K != 0
			}
			if cond {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		default:
			t.Fatalf("instruction %d: unexpected code %#x", pc, in.Code)
		}
	}
	t.Fatal("the program ran off its end")
	return 0
}

func TestSeccompProgram(t *testing.T) {
	abis, err := seccompABIs()
	if err != nil {
		t.Fatal(err)
	}
	prog := seccompProgram(abis)
	if len(prog) > unix.BPF_MAXINSNS {
		t.Fatalf("%d instructions; the kernel takes %d", len(prog), unix.BPF_MAXINSNS)
	}
	native := abis[0].arch
	const sigchld = uint64(unix.SIGCHLD)
	type filterCase struct {
		name string
		nr   uint32
		arch uint32
		arg0 uint64
		want uint32
	}
	cases := []filterCase{
		{"read", unix.SYS_READ, native, 0, retAllow},
		{"mount", unix.SYS_MOUNT, native, 0, retEPERM},
		{"unshare", unix.SYS_UNSHARE, native, unix.CLONE_NEWUSER, retEPERM},
		{"bpf", unix.SYS_BPF, native, 0, retEPERM},
		{"clone for fork", unix.SYS_CLONE, native, sigchld, retAllow},
		{"clone for a thread", unix.SYS_CLONE, native, unix.CLONE_VM | unix.CLONE_THREAD | unix.CLONE_SIGHAND, retAllow},
		{"clone with a user namespace", unix.SYS_CLONE, native, unix.CLONE_NEWUSER | sigchld, retEPERM},
		{"clone with a mount namespace", unix.SYS_CLONE, native, unix.CLONE_NEWNS, retEPERM},
		{"clone3", unix.SYS_CLONE3, native, 0, retENOSYS},
		{"another architecture", unix.SYS_READ, 0x12345678, 0, retKill},
	}
	if runtime.GOARCH == "amd64" {
		cases = append(cases,
			filterCase{"x32 read", x32Bit | unix.SYS_READ, native, 0, retENOSYS},
			filterCase{"i386 mount", 21, unix.AUDIT_ARCH_I386, 0, retEPERM},
			filterCase{"i386 read", 3, unix.AUDIT_ARCH_I386, 0, retAllow},
			filterCase{"i386 clone with a namespace", 120, unix.AUDIT_ARCH_I386, unix.CLONE_NEWNET, retEPERM})
	}
	for _, c := range cases {
		if got := runBPF(t, prog, c.nr, c.arch, c.arg0); got != c.want {
			t.Errorf("%s: filter returns %#x; want %#x", c.name, got, c.want)
		}
	}
	for _, abi := range abis {
		for _, nr := range abi.denied {
			if got := runBPF(t, prog, nr, abi.arch, 0); got != retEPERM {
				t.Errorf("arch %#x, system call %d: filter returns %#x; want EPERM", abi.arch, nr, got)
			}
		}
	}
}

// TestRunHostTool runs a host tool (a bootstrap tool's sandbox) on an
// empty root filesystem: it sees the host's system directories read-only
// and nothing else of the host's, works on the root at Target as the
// image's root, with shifted ids, and leaves no trace in the root but
// what it wrote.
func TestRunHostTool(t *testing.T) {
	requireRoot(t)
	testkit.Need(t, "busybox")
	base := t.TempDir()
	target := filepath.Join(base, "root")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(base, "secret")
	writeFile(t, secret, "host-secret\n")
	port, accepted := hostServer(t)
	toolDir := t.TempDir()
	// The shifted root is an ordinary user on the host: it reaches the
	// tool only through directories open to all.
	if err := os.Chmod(filepath.Dir(toolDir), 0o755); err != nil {
		t.Fatal(err)
	}
	tool := filepath.Join(toolDir, "tool")
	writeFile(t, tool, fmt.Sprintf(`#!/bin/sh
root=$1
echo uid=$(id -u)
echo made > "$root/made"
mkdir "$root/etc" && echo x > "$root/etc/owned" && chown 5:6 "$root/etc/owned"
cat %[1]s 2>/dev/null
cat /etc/shadow >/dev/null 2>&1 && echo shadow=readable
[ -e /home ] || echo home=absent
touch /usr/fgimg-probe 2>/dev/null && echo usr=writable
echo x > /proc/sys/kernel/core_pattern 2>/dev/null && echo sysctl=writable
mknod /tmp/vda b 254 0 2>/dev/null && echo mknod=allowed
busybox nc -w 2 127.0.0.1 %[2]d </dev/null
echo tool-done
`, secret, port))
	if err := os.Chmod(tool, 0o755); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, context.Background(), Spec{
		Upper: target, Target: "/target", HostPaths: []string{tool},
		Args: []string{tool, "/target"},
	})
	if err != nil {
		t.Fatalf("%v; stderr: %s", err, errOut)
	}
	for _, want := range []string{"uid=0\n", "home=absent\n", "tool-done\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s\nstderr: %s", want, out, errOut)
		}
	}
	for _, bad := range []string{"host-secret", "shadow=readable", "usr=writable", "sysctl=writable", "mknod=allowed"} {
		if strings.Contains(out, bad) {
			t.Errorf("the host tool got %s:\n%s", bad, out)
		}
	}
	if accepted() != 0 {
		t.Error("the host tool reached a service on the host's loopback")
	}
	if _, err := os.Stat("/usr/fgimg-probe"); err == nil {
		os.Remove("/usr/fgimg-probe")
		t.Error("the host tool wrote into the host's /usr")
	}
	if got := treeEntries(t, target); strings.Join(got, " ") != "etc etc/owned made" {
		t.Errorf("the root holds %q, want what the tool wrote and nothing else", got)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(target, "made"), &st); err != nil || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("a file the tool made as the image's root is owned by %d:%d on disk (%v), want 0:0", st.Uid, st.Gid, err)
	}
	if err := unix.Lstat(filepath.Join(target, "etc/owned"), &st); err != nil || st.Uid != 5 || st.Gid != 6 {
		t.Errorf("a file the tool gave 5:6 is owned by %d:%d on disk (%v)", st.Uid, st.Gid, err)
	}
	assertNoMounts(t, target)
}

func TestRunHostToolChecksPaths(t *testing.T) {
	for _, c := range []struct {
		s    Spec
		want string
	}{
		{Spec{Target: "target"}, "not a clean absolute path"},
		{Spec{Target: "/usr/target"}, "host directory"},
		{Spec{Target: "/proc/x"}, "lies in /proc"},
		{Spec{Target: "/target", HostPaths: []string{"/target/tool"}}, "overlaps the target"},
		{Spec{HostPaths: []string{"/opt/tool"}}, "without a target"},
	} {
		c.s.Upper, c.s.Args = t.TempDir(), []string{"/bin/true"}
		err := Run(context.Background(), c.s)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", c.s, err, c.want)
		}
	}
}

// TestRunHostToolDevices: with TargetDevices, a program chrooted into the
// target finds real device nodes in its /dev, and the root filesystem
// keeps an empty /dev.
func TestRunHostToolDevices(t *testing.T) {
	requireRoot(t)
	target := t.TempDir()
	out, errOut, err := run(t, context.Background(), Spec{
		Upper: target, Target: "/target", TargetDevices: true,
		Args: []string{"/bin/sh", "-c", `echo junk > /target/dev/null; [ -c /target/dev/null ] && [ -c /target/dev/urandom ] && echo devices=ok; ls /target/dev | tr '\n' ' '`},
	})
	if err != nil {
		t.Fatalf("%v; stderr: %s", err, errOut)
	}
	if !strings.HasPrefix(out, "devices=ok\nfull null random tty urandom zero") {
		t.Errorf("the target's /dev: %q", out)
	}
	if got := treeEntries(t, target); strings.Join(got, " ") != "dev" {
		t.Errorf("the root holds %q, want an empty /dev", got)
	}
}
