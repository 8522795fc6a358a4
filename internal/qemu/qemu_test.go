package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/testkit"
)

// files makes a kernel, an initrd, a raw and a qcow2 disk to point QEMU at.
func files(t *testing.T) (kernel, initrd, raw, qcow2 string) {
	dir := t.TempDir()
	kernel, initrd = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs.cpio.gz")
	raw, qcow2 = filepath.Join(dir, "disk,1.raw"), filepath.Join(dir, "disk.img")
	for f, b := range map[string][]byte{kernel: []byte("MZ"), initrd: {0x1f, 0x8b}, raw: make([]byte, 512), qcow2: append(qcow2Magic, 0, 0, 0, 3)} {
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return
}

// after returns the n values that follow flag's first occurrence in args.
func after(args []string, flag string, n int) []string {
	i := slices.Index(args, flag)
	if i < 0 || i+n >= len(args) {
		return nil
	}
	return args[i+1 : i+1+n]
}

// allAfter returns the values of every occurrence of flag.
func allAfter(args []string, flag string) []string {
	var out []string
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			out = append(out, args[i+1])
		}
	}
	return out
}

func prepared(t *testing.T, o Options) *Options {
	t.Helper()
	o = o.withDefaults()
	if err := o.check(); err != nil {
		t.Fatal(err)
	}
	return &o
}

func TestNetbootCommandLine(t *testing.T) {
	kernel, initrd, _, _ := files(t)
	o := prepared(t, Options{Kernel: kernel, Initrd: initrd, Append: "root=/dev/ram0 quiet"})
	args := o.args("tcg", "")
	for flag, want := range map[string]string{
		"-kernel": kernel, "-initrd": initrd, "-append": "root=/dev/ram0 quiet console=ttyS0",
		"-accel": "tcg", "-m": "1024", "-smp": "2", "-serial": "stdio", "-nic": "user,model=virtio-net-pci",
	} {
		if got := after(args, flag, 1); len(got) != 1 || got[0] != want {
			t.Errorf("%s %q, want %q\n%q", flag, got, want, args)
		}
	}
	for _, want := range []string{"-nodefaults", "-no-reboot"} {
		if !slices.Contains(args, want) {
			t.Errorf("no %s: %q", want, args)
		}
	}
	if slices.Contains(args, "-drive") || slices.Contains(args, "-snapshot") {
		t.Errorf("a netboot has no drive: %q", args)
	}
	o = prepared(t, Options{Kernel: kernel, Memory: 2048, CPUs: 4, NoNetwork: true})
	args = o.args("kvm", "")
	if after(args, "-m", 1)[0] != "2048" || after(args, "-smp", 1)[0] != "4" || after(args, "-accel", 1)[0] != "kvm" ||
		slices.Contains(args, "-nic") || slices.Contains(args, "-initrd") || after(args, "-append", 1)[0] != "console=ttyS0" {
		t.Errorf("%q", args)
	}
}

func TestSerialConsoleIsAdded(t *testing.T) {
	for in, want := range map[string]string{
		"":                                  "console=ttyS0",
		"quiet":                             "quiet console=ttyS0",
		"console=tty0":                      "console=tty0 console=ttyS0",
		"console=ttyS1":                     "console=ttyS1 console=ttyS0",
		"console=ttyS0,115200n8 quiet":      "console=ttyS0,115200n8 quiet",
		"console=tty0 console=ttyS0 ro":     "console=tty0 console=ttyS0 ro",
		"ip=dhcp  rootconsole=ttyS0 splash": "ip=dhcp  rootconsole=ttyS0 splash console=ttyS0",
	} {
		if got := withSerialConsole(in); got != want {
			t.Errorf("withSerialConsole(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDiskCommandLine(t *testing.T) {
	_, _, raw, qcow2 := files(t)
	o := prepared(t, Options{Disk: raw})
	args := o.args("tcg", "")
	if got := allAfter(args, "-drive"); len(got) != 1 || got[0] != "file="+strings.ReplaceAll(raw, ",", ",,")+",format=raw,if=virtio" {
		t.Errorf("raw drive %q", got)
	}
	if !slices.Contains(args, "-snapshot") {
		t.Errorf("the disk must be used with -snapshot: %q", args)
	}
	if slices.Contains(args, "-kernel") || slices.Contains(args, "-append") {
		t.Errorf("a disk boot has no kernel: %q", args)
	}
	o = prepared(t, Options{Disk: raw, CDROM: qcow2})
	if got := allAfter(o.args("tcg", ""), "-drive"); len(got) != 2 || got[1] != "file="+strings.ReplaceAll(qcow2, ",", ",,")+",format=raw,media=cdrom,readonly=on" {
		t.Errorf("CD-ROM drive %q", got)
	}
	o = prepared(t, Options{Disk: qcow2}) // no .qcow2 suffix: the format is read from the file
	if got := allAfter(o.args("tcg", ""), "-drive"); len(got) != 1 || !strings.HasSuffix(got[0], ",format=qcow2,if=virtio") {
		t.Errorf("qcow2 drive %q", got)
	}
	for _, o := range []Options{
		{Disk: qcow2, DiskFormat: "raw"},
		{Disk: raw, DiskFormat: "vmdk"},
		{Disk: filepath.Join(t.TempDir(), "missing.raw")},
		{},
		{Disk: raw, Initrd: raw},
	} {
		o = o.withDefaults()
		if err := o.check(); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}

func TestUEFICommandLine(t *testing.T) {
	_, _, raw, _ := files(t)
	dir := t.TempDir()
	code, vars := filepath.Join(dir, "CODE.fd"), filepath.Join(dir, "VARS.fd")
	os.WriteFile(code, []byte("code"), 0o644)
	os.WriteFile(vars, []byte("vars"), 0o644)
	o := prepared(t, Options{Disk: raw, UEFI: true, OVMFCode: code, OVMFVars: vars})
	args := o.args("tcg", "/tmp/vars-copy.fd")
	want := []string{"if=pflash,format=raw,readonly=on,file=" + code, "if=pflash,format=raw,file=/tmp/vars-copy.fd"}
	if got := allAfter(args, "-drive"); len(got) != 3 || !slices.Equal(got[:2], want) {
		t.Errorf("drives %q, want the firmware %q first", got, want)
	}
	if got := allAfter(prepared(t, Options{Disk: raw}).args("tcg", ""), "-drive"); len(got) != 1 {
		t.Errorf("BIOS boot with pflash drives: %q", got)
	}
	// The variable store is copied, never written in place.
	cp, err := copyVars(vars, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(cp); cp == vars || string(b) != "vars" {
		t.Errorf("copy %s: %q", cp, b)
	}
	// Without the ovmf package, a clear error.
	o2 := Options{Disk: raw, UEFI: true, OVMFCode: filepath.Join(dir, "nosuch.fd")}.withDefaults()
	if err := o2.check(); err == nil || !strings.Contains(err.Error(), "ovmf") {
		t.Errorf("missing firmware: %v", err)
	}
}

func TestChooseAccel(t *testing.T) {
	works := func() error { return nil }
	broken := func() error { return errors.New("/dev/kvm: no such file or directory") }
	probed := false
	never := func() error { probed = true; return nil }
	var log bytes.Buffer
	for _, c := range []struct {
		requested string
		probe     func() error
		want      string
		auto      bool
	}{
		{"", works, "kvm", true},
		{"auto", works, "kvm", true},
		{"", broken, "tcg", true},
		{"tcg", never, "tcg", false},
		{"kvm", never, "kvm", false},
	} {
		got, auto, err := chooseAccel(c.requested, c.probe, &log)
		if err != nil || got != c.want || auto != c.auto {
			t.Errorf("chooseAccel(%q) = %q, %v, %v; want %q, %v", c.requested, got, auto, err, c.want, c.auto)
		}
	}
	if probed {
		t.Error("a requested accelerator must not be probed")
	}
	if !strings.Contains(log.String(), "TCG") || !strings.Contains(log.String(), "no such file") {
		t.Errorf("the fallback to TCG must say why: %q", log.String())
	}
	if _, _, err := chooseAccel("hvf", works, &log); err == nil {
		t.Error("unknown accelerator accepted")
	}
}

func TestProbeKVM(t *testing.T) {
	dir := t.TempDir()
	noVirt := filepath.Join(dir, "cpuinfo-novirt")
	vmx := filepath.Join(dir, "cpuinfo-vmx")
	os.WriteFile(noVirt, []byte("processor\t: 0\nflags\t\t: fpu vme sse2 hypervisor\n\nprocessor\t: 1\nflags\t\t: fpu vme sse2\n"), 0o644)
	os.WriteFile(vmx, []byte("processor\t: 0\nvmx flags\t: ept\nflags\t\t: fpu vmx sse2\n"), 0o644)
	modules := filepath.Join(dir, "module")
	os.MkdirAll(filepath.Join(modules, "kvm_pvm"), 0o755)

	if err := probeKVM(filepath.Join(dir, "kvm"), vmx, modules); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing device: %v", err)
	}
	if err := probeKVM("/dev/null", vmx, modules); err == nil || !strings.Contains(err.Error(), "KVM_GET_API_VERSION") {
		t.Errorf("not a KVM device: %v", err)
	}
	if hasVirtFlag("flags\t: vmxe svmx\n") || !hasVirtFlag("flags\t: sse svm\n") {
		t.Error("hasVirtFlag must match whole flags")
	}
	// With a /dev/kvm that answers, the CPU flags decide.
	if err := probeKVM("/dev/kvm", vmx, t.TempDir()); err != nil {
		t.Skipf("/dev/kvm does not answer here (%v): the rest needs one", err)
	}
	err := probeKVM("/dev/kvm", noVirt, modules)
	if err == nil || !strings.Contains(err.Error(), "no vmx or svm") || !strings.Contains(err.Error(), "kvm_pvm") {
		t.Errorf("KVM without hardware virtualization: %v", err)
	}
}

// fakeQEMU writes a QEMU stand-in: a shell script that saves its
// arguments, one a line, in the returned file, then runs body.
func fakeQEMU(t *testing.T, body string) (bin, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	bin, argsFile = filepath.Join(dir, "qemu-system-x86_64"), filepath.Join(dir, "args")
	script := fmt.Sprintf("#!/bin/sh\nfor a in \"$@\"; do printf '%%s\\n' \"$a\"; done > '%s'\n%s\n", argsFile, body)
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, argsFile
}

// sleeper returns a command that sleeps in a process the test can find.
func sleeper() string {
	return fmt.Sprintf("sleep %d", 600000+time.Now().UnixNano()%99999)
}

// processWith reports whether a process's command line contains s.
func processWith(s string) bool {
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err == nil && strings.Contains(strings.ReplaceAll(string(b), "\x00", " "), s) {
			return true
		}
	}
	return false
}

// fakeBoot boots a kernel with a fake QEMU running body, under TCG.
func fakeBoot(t *testing.T, body string, o Options) (Result, string, error) {
	t.Helper()
	kernel, _, _, _ := files(t)
	o.Binary, _ = fakeQEMU(t, body)
	o.Kernel = kernel
	if o.Accel == "" {
		o.Accel = "tcg"
	}
	if o.Timeout == 0 {
		o.Timeout = 20 * time.Second
	}
	var console testkit.SyncBuffer
	o.Console = &console
	res, err := Boot(context.Background(), o)
	return res, console.String(), err
}

func TestBootStopsAtTheLoginPrompt(t *testing.T) {
	sl := sleeper()
	prompt := `printf '[    2.0] Run /init as init process\r\n\033[H\033[2J\r\nDebian GNU/Linux 12 localhost ttyS0\r\n\r\nlocalhost login: '`
	res, console, err := fakeBoot(t, prompt+"\nexec "+sl, Options{})
	if err != nil || res.Outcome != Login || res.Marker != "localhost login:" {
		t.Fatalf("%+v, %v", res, err)
	}
	if !strings.HasSuffix(console, "\r\n\r\nlocalhost login: ") {
		t.Errorf("the console must be passed on unchanged: %q", console)
	}
	if res.Tail[len(res.Tail)-1] != "localhost login: " || res.Accel != "tcg" || res.Elapsed > 10*time.Second {
		t.Errorf("%+v", res)
	}
	if processWith(sl) {
		t.Error("QEMU still runs after Boot returned")
	}
}

func TestBootStopsAtTheExpectedMarker(t *testing.T) {
	sl := sleeper()
	body := "printf 'localhost login: \\r\\nsmoke: SMOKE'; sleep 0.2; printf -- '-OK\\r\\n'; exec " + sl
	res, _, err := fakeBoot(t, body, Options{Expect: []string{"SMOKE-OK", "other"}})
	if err != nil || res.Outcome != Expected || res.Marker != "SMOKE-OK" {
		t.Fatalf("%+v, %v", res, err)
	}
	if processWith(sl) {
		t.Error("QEMU still runs after Boot returned")
	}
}

func TestBootReportsAPanic(t *testing.T) {
	body := `printf '[    1.9] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n'
printf '[    1.9] CPU: 1 PID: 1 Comm: swapper/0 Not tainted 6.1.0-56-amd64\r\n'
printf '[    1.9] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0) ]---\r\n'
printf 'localhost login: '
exec sleep 60`
	start := time.Now()
	res, _, err := fakeBoot(t, body, Options{})
	if !errors.Is(err, ErrPanic) || res.Outcome != Panic || !strings.Contains(err.Error(), "Unable to mount root fs") {
		t.Fatalf("%+v, %v", res, err)
	}
	if !slices.ContainsFunc(res.Tail, func(l string) bool { return strings.Contains(l, "end Kernel panic") }) {
		t.Errorf("the last lines must hold the whole panic report: %q", res.Tail)
	}
	if time.Since(start) > panicGrace {
		t.Errorf("took %s: the end of the panic report must end the wait", time.Since(start))
	}
}

func TestBootPanicWithoutItsEnd(t *testing.T) {
	defer func(g time.Duration) { panicGrace = g }(panicGrace)
	panicGrace = 300 * time.Millisecond
	res, _, err := fakeBoot(t, "printf 'Kernel panic - not syncing: Attempted to kill init!\\n'; exec sleep 60", Options{})
	if !errors.Is(err, ErrPanic) || res.Outcome != Panic || res.Marker != "Kernel panic - not syncing: Attempted to kill init!" {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestBootTimesOut(t *testing.T) {
	sl := sleeper()
	start := time.Now()
	res, _, err := fakeBoot(t, "echo 'Waiting for root device'; exec "+sl, Options{Timeout: 500 * time.Millisecond, Expect: []string{"READY"}})
	if !errors.Is(err, ErrTimeout) || res.Outcome != Timeout || !strings.Contains(err.Error(), `"READY"`) {
		t.Fatalf("%+v, %v", res, err)
	}
	if d := time.Since(start); d < 500*time.Millisecond || d > 5*time.Second {
		t.Errorf("timed out after %s", d)
	}
	if len(res.Tail) != 1 || res.Tail[0] != "Waiting for root device" {
		t.Errorf("tail %q", res.Tail)
	}
	if processWith(sl) {
		t.Error("QEMU still runs after a timeout")
	}
}

func TestBootGuestStopsFirst(t *testing.T) {
	res, _, err := fakeBoot(t, "echo 'reboot: Power down'; exit 0", Options{})
	if !errors.Is(err, ErrExited) || res.Outcome != Exited || !strings.Contains(err.Error(), "powered off") {
		t.Fatalf("%+v, %v", res, err)
	}
	res, _, err = fakeBoot(t, "echo \"qemu-system-x86_64: -drive file=x: Could not open 'x'\" >&2; exit 1", Options{})
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "Could not open 'x'") || !strings.Contains(err.Error(), "exit status 1") {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestBootFallsBackToTCG(t *testing.T) {
	defer func(p func() error) { kvmProbe = p }(kvmProbe)
	kvmProbe = func() error { return nil } // KVM looks fine, but QEMU cannot use it
	body := `case "$*" in *"-accel kvm"*) echo 'qemu-system-x86_64: failed to initialize kvm: Permission denied' >&2; exit 1;; esac
printf 'localhost login: '; exec sleep 60`
	var log testkit.SyncBuffer
	res, _, err := fakeBoot(t, body, Options{Accel: "auto", Log: &log})
	if err != nil || res.Outcome != Login || res.Accel != "tcg" || after(res.Command, "-accel", 1)[0] != "tcg" {
		t.Fatalf("%+v, %v", res, err)
	}
	if !strings.Contains(log.String(), "failed to initialize kvm") || !strings.Contains(log.String(), "TCG") {
		t.Errorf("log: %s", log.String())
	}
	// Asked for KVM, it gets KVM or an error.
	res, _, err = fakeBoot(t, body, Options{Accel: "kvm"})
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "failed to initialize kvm") {
		t.Fatalf("%+v, %v", res, err)
	}
}

func TestBootCancelled(t *testing.T) {
	kernel, _, _, _ := files(t)
	sl := sleeper()
	bin, argsFile := fakeQEMU(t, "echo booting; exec "+sl)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for !processWith(sl) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	_, err := Boot(ctx, Options{Binary: bin, Kernel: kernel, Accel: "tcg"})
	if !errors.Is(err, context.Canceled) || time.Since(start) > 5*time.Second {
		t.Fatalf("%v after %s", err, time.Since(start))
	}
	if processWith(sl) {
		t.Error("QEMU still runs after Boot was cancelled")
	}
	b, _ := os.ReadFile(argsFile)
	if !strings.Contains(string(b), "-kernel\n"+kernel+"\n") {
		t.Errorf("QEMU got %q", b)
	}
}

func TestBootWithoutQEMU(t *testing.T) {
	kernel, _, _, _ := files(t)
	// A Debian host without QEMU anywhere.
	testkit.HostTools(t, t.TempDir())
	testkit.HostOS(t, "ID=debian\n")
	_, err := Boot(context.Background(), Options{Kernel: kernel})
	if err == nil || !strings.Contains(err.Error(), "qemu-system-x86_64 not found: install qemu-system-x86 (apt-get install qemu-system-x86)") {
		t.Errorf("%v", err)
	}
}
