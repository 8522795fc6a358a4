package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/targets"
)

const bootConfig = `
image "base" {
  bootstrap "debootstrap" {
    suite = "bookworm"
  }
}

image "arm" {
  bootstrap "debootstrap" {
    suite = "bookworm"
  }
  arch = "arm64"
}

target "netboot" "node" {
  image       = image.base
  kernel_args = ["ip=dhcp", "quiet"]
}

target "qcow2" "vm" {
  image       = image.base
  boot        = "hybrid"
  kernel_args = ["console=ttyS0,115200"]
}

target "raw" "metal" {
  image = image.base
  boot  = "uefi"
}

target "raw" "legacy" {
  image = image.base
  boot  = "bios"
}

target "raw" "bare" {
  image = image.base
  boot  = "none"
}

target "tar" "rootfs" {
  image = image.base
}

target "raw" "armdisk" {
  image = image.arm
}

target "warewulf" "compute" {
  image = image.base
}
`

// bootEnv is a configuration with fake built artifacts and a fake QEMU
// first on $PATH, whose behaviour the test sets in $FAKE_QEMU_BODY.
type bootEnv struct {
	t             *testing.T
	dir, out      string
	args, sleeper string
	digests       map[string]string // target name → its stage digest, from fgimg plan
}

func newBootEnv(t *testing.T) *bootEnv {
	e := &bootEnv{t: t, dir: t.TempDir()}
	e.out = filepath.Join(e.dir, "out")
	writeFile(t, filepath.Join(e.dir, "main.fg.hcl"), bootConfig)
	bin := t.TempDir()
	e.args = filepath.Join(bin, "args")
	e.sleeper = fmt.Sprintf("sleep %d", 700000+time.Now().UnixNano()%99999)
	writeFile(t, filepath.Join(bin, "qemu-system-x86_64"), "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > \"$FAKE_QEMU_ARGS\"\neval \"$FAKE_QEMU_BODY\"\n")
	os.Chmod(filepath.Join(bin, "qemu-system-x86_64"), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	t.Setenv("FAKE_QEMU_ARGS", e.args)
	e.guest(`printf 'Debian GNU/Linux 12 localhost ttyS0\r\n\r\nlocalhost login: '`)

	code, out, errw := fgimg(t, "plan", "--json", e.dir)
	if code != 0 {
		t.Fatalf("plan: %s", errw)
	}
	var p struct {
		Targets []struct {
			Name, Kind, Image string
			Stages            []string
		}
	}
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatal(err)
	}
	e.digests = map[string]string{}
	for _, tg := range p.Targets {
		e.digests[tg.Name] = tg.Stages[0]
	}
	return e
}

// guest sets what the fake QEMU prints before it waits to be killed.
func (e *bootEnv) guest(script string) {
	e.t.Setenv("FAKE_QEMU_BODY", script+"\nexec "+e.sleeper)
}

// built writes OUT/<target>/ as fgimg build would: files and manifest.json.
func (e *bootEnv) built(target, kind string, files map[string][]byte) {
	type artifact struct {
		Path      string `json:"path"`
		Digest    string `json:"digest"`
		Size      int    `json:"size"`
		MediaType string `json:"media_type"`
	}
	m := struct {
		Target    string     `json:"target"`
		Kind      string     `json:"kind"`
		Image     string     `json:"image"`
		Stages    []string   `json:"stages"`
		Artifacts []artifact `json:"artifacts"`
	}{Target: target, Kind: kind, Image: "base", Stages: []string{"sha256:0", e.digests[target]}}
	for name, b := range files {
		writeFile(e.t, filepath.Join(e.out, target, name), string(b))
		m.Artifacts = append(m.Artifacts, artifact{Path: name, Size: len(b), MediaType: mediaTypeOf(name)})
	}
	b, _ := json.Marshal(m)
	writeFile(e.t, filepath.Join(e.out, target, "manifest.json"), string(b))
}

// mediaTypeOf is the media type fgimg gives an artifact named name.
func mediaTypeOf(name string) string {
	switch {
	case name == "vmlinuz":
		return targets.MediaTypeKernel
	case strings.HasPrefix(name, "initramfs.cpio"):
		return targets.MediaTypeInitramfs + "+gzip"
	case name == "disk.raw":
		return targets.MediaTypeRawDisk
	case name == "disk.qcow2":
		return targets.MediaTypeQCOW2
	}
	return "application/octet-stream"
}

// boot runs fgimg boot -o OUT ARGS... DIR.
func (e *bootEnv) boot(args ...string) (int, string, string) {
	e.t.Helper()
	args = append(append([]string{"boot", "-o", e.out, "-accel", "tcg"}, args...), e.dir)
	code, out, errw := fgimg(e.t, args...)
	if processWith(e.sleeper) {
		e.t.Errorf("fgimg %s left QEMU running", strings.Join(args, " "))
	}
	return code, out, errw
}

// qemuArgs returns what the fake QEMU was last run with.
func (e *bootEnv) qemuArgs() []string {
	b, err := os.ReadFile(e.args)
	if err != nil {
		e.t.Fatalf("QEMU was not run: %v", err)
	}
	os.Remove(e.args)
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func flagValue(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func drives(args []string) []string {
	var out []string
	for i, a := range args {
		if a == "-drive" && i+1 < len(args) {
			out = append(out, args[i+1])
		}
	}
	return out
}

var qcow2Header = []byte{'Q', 'F', 'I', 0xfb, 0, 0, 0, 3}

func TestBootNetboot(t *testing.T) {
	e := newBootEnv(t)
	e.built("node", "netboot", map[string][]byte{"vmlinuz": []byte("kernel"), "initramfs.cpio.zst": []byte("initrd"), "boot.ipxe": []byte("#!ipxe")})
	code, out, errw := e.boot("-memory", "2048", "node", "-smp", "3")
	if code != 0 || !strings.Contains(errw, "node booted: a login prompt") {
		t.Fatalf("exit %d\n%s", code, errw)
	}
	args := e.qemuArgs()
	dir := filepath.Join(e.out, "node")
	for flag, want := range map[string]string{
		"-kernel": filepath.Join(dir, "vmlinuz"), "-initrd": filepath.Join(dir, "initramfs.cpio.zst"),
		"-append": "ip=dhcp quiet console=ttyS0", "-accel": "tcg", "-m": "2048", "-smp": "3",
	} {
		if got := flagValue(args, flag); got != want {
			t.Errorf("%s %q, want %q", flag, got, want)
		}
	}
	if len(drives(args)) != 0 {
		t.Errorf("netboot with drives: %q", args)
	}
	// The console is shown and logged.
	if !strings.HasSuffix(out, "localhost login: ") {
		t.Errorf("stdout: %q", out)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "boot.log")); !strings.Contains(string(b), "\r\nlocalhost login: ") {
		t.Errorf("boot.log: %q", b)
	}
	if strings.Contains(errw, "note:") {
		t.Errorf("fresh artifacts called stale:\n%s", errw)
	}
}

func TestBootDisks(t *testing.T) {
	e := newBootEnv(t)
	e.built("vm", "qcow2", map[string][]byte{"disk.qcow2": qcow2Header})
	e.built("metal", "raw", map[string][]byte{"disk.raw": make([]byte, 4096)})
	e.built("legacy", "raw", map[string][]byte{"disk.raw": make([]byte, 4096)})
	_, ovmfErr := os.Stat("/usr/share/OVMF/OVMF_CODE.fd")

	// hybrid: BIOS unless -uefi.
	code, _, errw := e.boot("vm")
	if code != 0 {
		t.Fatalf("vm: exit %d\n%s", code, errw)
	}
	args := e.qemuArgs()
	want := "file=" + filepath.Join(e.out, "vm", "disk.qcow2") + ",format=qcow2,if=virtio"
	if d := drives(args); len(d) != 1 || d[0] != want || !slices.Contains(args, "-snapshot") {
		t.Errorf("vm: drives %q, want only %q with -snapshot", d, want)
	}
	if slices.Contains(args, "-kernel") {
		t.Errorf("vm booted a kernel: %q", args)
	}
	for _, c := range []struct {
		args []string
		disk string
	}{{[]string{"vm", "-uefi"}, "vm/disk.qcow2,format=qcow2"}, {[]string{"metal"}, "metal/disk.raw,format=raw"}} {
		code, _, errw = e.boot(c.args...)
		if ovmfErr != nil {
			if code != 1 || !strings.Contains(errw, "ovmf") {
				t.Errorf("%v without OVMF: exit %d\n%s", c.args, code, errw)
			}
			continue
		}
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", c.args, code, errw)
		}
		d := drives(e.qemuArgs())
		if len(d) != 3 || d[0] != "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd" ||
			!strings.HasPrefix(d[1], "if=pflash,format=raw,file=") || strings.Contains(d[1], "/usr/share/OVMF") ||
			!strings.Contains(d[2], c.disk) {
			t.Errorf("%v: drives %q: want the OVMF code, a copy of its variables and the disk", c.args, d)
		}
	}
	code, _, errw = e.boot("legacy")
	if d := drives(e.qemuArgs()); code != 0 || len(d) != 1 || !strings.Contains(d[0], "format=raw") {
		t.Errorf("legacy: exit %d, drives %q\n%s", code, d, errw)
	}
	if code, _, errw = e.boot("legacy", "-uefi"); code != 1 || !strings.Contains(errw, "BIOS only") {
		t.Errorf("legacy -uefi: exit %d\n%s", code, errw)
	}
}

func TestBootRefusals(t *testing.T) {
	e := newBootEnv(t)
	e.built("rootfs", "tar", map[string][]byte{"rootfs.tar.gz": []byte("x")})
	e.built("vm", "raw", map[string][]byte{"disk.raw": []byte("x")}) // built as raw, now qcow2
	e.built("node", "netboot", map[string][]byte{"vmlinuz": []byte("kernel")})
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"metal"}, 1, "target \"metal\" has not been built in " + e.out + " (no " + filepath.Join(e.out, "metal", "manifest.json") + ").\nBuild it first: fgimg build -o " + e.out + " -only metal " + e.dir},
		{[]string{"bare"}, 1, `has boot = "none": its disk has no boot loader, so it cannot boot by itself`},
		{[]string{"rootfs"}, 1, `target "rootfs" is a tar target, which does not boot`},
		{[]string{"compute"}, 1, `target "compute" is a warewulf target: its artifact is the root filesystem the node's image is built from, not a boot; fgimg vet -boot compute boots that image`},
		{[]string{"armdisk"}, 1, "amd64 images only"},
		{[]string{"vm"}, 1, "holds a raw target, but \"vm\" is a qcow2 target now"},
		{[]string{"node"}, 1, "manifest.json lists no initramfs"},
		{[]string{"nosuch"}, 1, `there is no target "nosuch"`},
		{[]string{"-accel", "hvf", "node"}, 2, "want kvm, tcg or auto"},
		{[]string{"-memory", "0", "node"}, 2, "-memory"},
		{[]string{"-expect", "", "node"}, 2, "empty marker"},
	}
	for _, c := range cases {
		code, _, errw := e.boot(c.args...)
		if code != c.code || !strings.Contains(errw, c.want) {
			t.Errorf("boot %v: exit %d (want %d), stderr lacks %q:\n%s", c.args, code, c.code, c.want, errw)
		}
	}
	if _, err := os.Stat(e.args); err == nil {
		t.Error("QEMU was run for a target that cannot boot")
	}
	if code, _, errw := fgimg(t, "boot"); code != 2 || !strings.Contains(errw, "boot needs a target name") {
		t.Errorf("no target: exit %d\n%s", code, errw)
	}
	if code, out, _ := fgimg(t, "boot", "-h"); code != 0 || !strings.Contains(out, "Usage: fgimg boot [flags] TARGET [PATH]") {
		t.Errorf("-h: exit %d\n%s", code, out)
	}
}

func TestBootOutcomes(t *testing.T) {
	e := newBootEnv(t)
	e.built("node", "netboot", map[string][]byte{"vmlinuz": []byte("k"), "initramfs.cpio.gz": []byte("i")})
	e.built("metal", "raw", map[string][]byte{"disk.raw": make([]byte, 512)})

	e.guest(`printf 'Run /init as init process\r\nKernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\r\n---[ end Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100 ]---\r\n'`)
	code, _, errw := e.boot("node")
	if code != 1 || !strings.Contains(errw, "node failed to boot: kernel panic") ||
		!strings.Contains(errw, "Last lines of the console") || !strings.Contains(errw, "  Run /init as init process\n") {
		t.Errorf("panic: exit %d\n%s", code, errw)
	}

	e.guest(`printf 'waiting for root\r\n'`)
	start := time.Now()
	code, _, errw = e.boot("-timeout", "300ms", "metal")
	if code != 1 || !strings.Contains(errw, "timed out after 300ms waiting for a login prompt") || !strings.Contains(errw, "  waiting for root\n") {
		t.Errorf("timeout: exit %d\n%s", code, errw)
	}
	if !strings.Contains(errw, "lack console=ttyS0") {
		t.Errorf("a silent disk whose kernel_args lack console=ttyS0 deserves a hint:\n%s", errw)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("timeout took %s", time.Since(start))
	}

	// -expect: a login prompt is not enough; -quiet: the console only
	// goes to the log.
	log := filepath.Join(t.TempDir(), "console.txt")
	e.guest(`printf 'localhost login: \r\n'; sleep 0.2; printf 'smoke: READY\r\n'`)
	code, out, errw := e.boot("-expect", "READY", "-quiet", "-log", log, "node")
	if code != 0 || !strings.Contains(errw, `node booted: "READY"`) || out != "" {
		t.Errorf("expect: exit %d, stdout %q\n%s", code, out, errw)
	}
	if b, _ := os.ReadFile(log); string(b) != "localhost login: \r\nsmoke: READY\r\n" {
		t.Errorf("log: %q", b)
	}

	// A stale build still boots, with a note.
	e.digests["node"] = "sha256:old"
	e.built("node", "netboot", map[string][]byte{"vmlinuz": []byte("k"), "initramfs.cpio.gz": []byte("i")})
	e.guest(`printf 'localhost login: '`)
	if code, _, errw = e.boot("node"); code != 0 || !strings.Contains(errw, "was built from another version of the configuration") {
		t.Errorf("stale: exit %d\n%s", code, errw)
	}
}

// TestBootStopsQEMU runs fgimg boot as a process: an interrupt stops it
// and QEMU cleanly, and QEMU dies with fgimg even on kill -9.
func TestBootStopsQEMU(t *testing.T) {
	e := newBootEnv(t)
	e.built("node", "netboot", map[string][]byte{"vmlinuz": []byte("k"), "initramfs.cpio.gz": []byte("i")})
	e.guest(`echo booting`)
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		cmd := exec.Command(os.Args[0], "boot", "-accel", "tcg", "-o", e.out, "node", e.dir)
		cmd.Env = append(os.Environ(), "FGIMG_TEST_AS_MAIN=1")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "QEMU to start", func() bool { return processWith(e.sleeper) })
		start := time.Now()
		cmd.Process.Signal(sig)
		err := cmd.Wait()
		waitFor(t, "QEMU to stop", func() bool { return !processWith(e.sleeper) })
		if sig == syscall.SIGINT {
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "Interrupted") {
				t.Errorf("interrupt: %v\n%s", err, stderr.String())
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %s to stop", time.Since(start))
			}
		}
	}
}

// TestBootBuildLoadsOnce: boot -build boots from the plan its build made
// rather than loading the configuration again, so what the load reports
// (here a warning) is printed once.
func TestBootBuildLoadsOnce(t *testing.T) {
	e := newEnv(t)
	e.write(buildConfig + kernelledConfig + `
image "odd" {
  parent = image.base
  file "/etc/odd" {
    content = "a file with the sticky bit"
    mode    = "1644"
  }
}
`)
	bin := t.TempDir()
	sleeper := fmt.Sprintf("sleep %d", 800000+time.Now().UnixNano()%99999)
	writeFile(t, filepath.Join(bin, "qemu-system-x86_64"), "#!/bin/sh\nprintf 'localhost login: '\nexec "+sleeper+"\n")
	os.Chmod(filepath.Join(bin, "qemu-system-x86_64"), 0o755)
	cmd := e.command(context.Background(), []string{"PATH=" + bin + ":" + os.Getenv("PATH")},
		"boot", "-build", "-accel", "tcg", "-o", e.out, "nb")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil || !strings.Contains(stderr.String(), "nb booted: a login prompt") {
		t.Fatalf("boot -build: %v\n%s", err, stderr.String())
	}
	if n := strings.Count(stderr.String(), "Unsafe file mode"); n != 1 {
		t.Errorf("the load's warning was printed %d times, want once:\n%s", n, stderr.String())
	}
	if processWith(sleeper) {
		t.Error("boot -build left QEMU running")
	}
}
