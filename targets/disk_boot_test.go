package targets

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/fgimg/fgimg/lang"
)

// bootTimeout is how long a guest may take to reach its login prompt
// under TCG.
const bootTimeout = 150 * time.Second

const ovmfCode, ovmfVars = "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"

// TestRawDiskBoots boots a disk of the examples' Debian base image in
// QEMU, on SeaBIOS and on OVMF, to the login prompt on the serial
// console. fgimg builds the image (into a cache under the temp
// directory that later runs reuse) and a tar of it; the disk is made
// from that tree by this package's code, so it is never a stale cached
// artifact.
func TestRawDiskBoots(t *testing.T) {
	if testing.Short() {
		t.Skip("boots Debian in QEMU (drop -short to run)")
	}
	if os.Geteuid() != 0 {
		t.Skip("building the image needs root")
	}
	testkit.Need(t, "qemu-system-x86_64", "debootstrap", "tar")
	needDiskTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	req, _ := http.NewRequestWithContext(ctx, http.MethodHead, lang.DefaultMirror+"/dists/bookworm/Release", nil)
	resp, err := http.DefaultClient.Do(req)
	cancel()
	if err != nil {
		t.Skipf("the Debian mirror is unreachable: %v", err)
	}
	resp.Body.Close()

	root := debianBaseTree(t)
	img := filepath.Join(t.TempDir(), "disk.raw")
	in := &Input{
		Root:  root,
		Image: ImageInfo{Name: "base", ID: digest.FromString("debian base for the boot test"), Arch: "amd64"},
	}
	adaptDisk(t, in)
	start := time.Now()
	info, err := BuildDisk(context.Background(), in, &DiskSpec{KernelArgs: []string{"console=ttyS0,115200"}}, img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("disk of %s (kernel %s) in %s", formatDiskSize(info.Size, false), info.Kernel, time.Since(start).Round(time.Millisecond))

	t.Run("bios", func(t *testing.T) { bootToLogin(t, img, nil) })
	t.Run("uefi", func(t *testing.T) {
		testkit.Need(t, ovmfCode, ovmfVars)
		vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
		b, err := os.ReadFile(ovmfVars)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vars, b, 0o644); err != nil {
			t.Fatal(err)
		}
		bootToLogin(t, img, []string{
			"-drive", "if=pflash,format=raw,readonly=on,file=" + ovmfCode,
			"-drive", "if=pflash,format=raw,file=" + vars,
		})
	})
}

// debianBaseTree builds examples/debian's base image with fgimg, writes
// it as a tar target and unpacks that into a temporary directory.
func debianBaseTree(t *testing.T) string {
	t.Helper()
	work := t.TempDir()
	goTool := testkit.Need(t, "go")[0]
	fgimg := filepath.Join(work, "fgimg")
	if out, err := exec.Command(goTool, "build", "-o", fgimg, "../cmd/fgimg").CombinedOutput(); err != nil {
		t.Fatalf("building fgimg: %v\n%s", err, out)
	}
	tmpl := filepath.Join(work, "tmpl")
	examples, _ := filepath.Abs("../examples/debian")
	if out, err := exec.Command("cp", "-r", examples, tmpl).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	// Only the base image, and a tar of it.
	for _, f := range []string{"hadoop.fg.hcl", "hpc.fg.hcl", "web.fg.hcl"} {
		os.Remove(filepath.Join(tmpl, f))
	}
	targets := "target \"tar\" \"base-tar\" {\n  image       = image.base\n  compression = \"none\"\n}\n"
	if err := os.WriteFile(filepath.Join(tmpl, "targets.fg.hcl"), []byte(targets), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(work, "out")
	cache := filepath.Join(os.TempDir(), "fgimg-raw-boot-cache")
	cmd := exec.Command(fgimg, "build", "-cache-dir", cache, "-o", out, tmpl)
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("fgimg build: %v\n%s", err, b)
	}
	t.Logf("image built (or found in %s) in %s", cache, time.Since(start).Round(time.Second))
	root := filepath.Join(work, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(out, "base-tar", "rootfs.tar")
	if b, err := exec.Command("tar", "-C", root, "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v\n%s", tarball, err, b)
	}
	os.Remove(tarball)
	return root
}

var bootLoginPrompt = regexp.MustCompile(`(?m)^\S+ login: `)

// bootToLogin boots img in QEMU (TCG, snapshot mode) until a login
// prompt shows on the serial console, and kills QEMU in any case.
func bootToLogin(t *testing.T, img string, firmware []string) {
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	args := append([]string{
		"-accel", "tcg", "-m", "1024", "-nographic", "-no-reboot", "-snapshot",
		"-drive", "file=" + img + ",format=raw,if=virtio",
		"-serial", "mon:stdio", "-nic", "none",
	}, firmware...)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	console := &consoleLog{seen: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = console, console
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		<-done
	}()
	select {
	case <-console.seen:
		t.Logf("login prompt after %s", time.Since(start).Round(time.Second))
	case err := <-done:
		done <- err
		t.Fatalf("QEMU stopped before a login prompt (%v); console:\n%s", err, console.tail())
	case <-ctx.Done():
		t.Fatalf("no login prompt in %s; console:\n%s", bootTimeout, console.tail())
	}
}

// consoleLog keeps the last 16 KiB of a guest's console and signals
// seen at the first login prompt.
type consoleLog struct {
	mu    sync.Mutex
	buf   []byte
	seen  chan struct{}
	found bool
}

func (c *consoleLog) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf = append(c.buf, p...)
	if len(c.buf) > 64<<10 {
		c.buf = append(c.buf[:0], c.buf[len(c.buf)-16<<10:]...)
	}
	if !c.found && bootLoginPrompt.Match(bytes.ReplaceAll(c.buf, []byte("\r"), nil)) {
		c.found = true
		close(c.seen)
	}
	return len(p), nil
}

func (c *consoleLog) tail() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.buf
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	return string(bytes.ToValidUTF8(b, nil))
}
