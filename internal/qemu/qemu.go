package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fgimg/fgimg/internal/hosttool"
	"github.com/fgimg/fgimg/internal/shquote"
)

// Options says what to boot and how.
type Options struct {
	// Binary is the QEMU to run, a path or a name looked up in $PATH.
	// Default "qemu-system-x86_64".
	Binary string

	// Kernel, Initrd and Append boot a kernel directly (netboot).
	// console=ttyS0 is added to Append when it is not there.
	Kernel, Initrd, Append string

	// Disk is a disk image, attached as virtio with -snapshot: the boot
	// never changes it. DiskFormat is "raw" or "qcow2"; default: what
	// the file is.
	Disk, DiskFormat string

	// CDROM is an ISO image attached read-only as a CD-ROM (a cloud's
	// config drive or context CD-ROM).
	CDROM string

	// UEFI boots with OVMF instead of SeaBIOS. OVMFCode and OVMFVars
	// default to Debian's ovmf package files; the variables are copied
	// to a temporary file for the boot.
	UEFI               bool
	OVMFCode, OVMFVars string

	Memory int    // MiB; default 1024
	CPUs   int    // default 2
	Accel  string // "kvm", "tcg", or "" (or "auto") to use KVM when it works here

	NoNetwork bool // no NIC; by default a virtio NIC on QEMU's user network

	// Expect lists texts whose appearance on the console means success.
	// Without any, success is a login prompt (a line such as
	// "localhost login: ").
	Expect []string

	Timeout time.Duration // default 5 minutes

	Console io.Writer // receives the serial console as it comes, unchanged
	Log     io.Writer // receives notes: the accelerator, the command line, QEMU's own messages

	TempDir string // for the UEFI variables copy; default os.TempDir()
}

// Outcome is how a boot ended.
type Outcome string

const (
	Expected Outcome = "expected" // one of Options.Expect appeared
	Login    Outcome = "login"    // a login prompt appeared
	Panic    Outcome = "panic"    // the kernel panicked
	Timeout  Outcome = "timeout"  // none of these within Options.Timeout
	Exited   Outcome = "exited"   // QEMU ended first: the guest powered off or rebooted, or QEMU failed
)

// Errors Boot returns, wrapped with details; test them with errors.Is.
var (
	ErrPanic   = errors.New("kernel panic")
	ErrTimeout = errors.New("timed out")
	ErrExited  = errors.New("QEMU exited")
)

// Result is what Boot saw.
type Result struct {
	Outcome Outcome
	Marker  string        // the marker that matched, or the login prompt or panic line
	Accel   string        // "kvm" or "tcg"
	Elapsed time.Duration // from QEMU's start
	Tail    []string      // the console's last lines, cleaned of escape sequences
	Command []string      // QEMU's command line
}

// Defaults.
const (
	DefaultBinary   = "qemu-system-x86_64"
	DefaultMemory   = 1024
	DefaultCPUs     = 2
	DefaultTimeout  = 5 * time.Minute
	DefaultOVMFCode = "/usr/share/OVMF/OVMF_CODE.fd"
	DefaultOVMFVars = "/usr/share/OVMF/OVMF_VARS.fd"
)

// Tunables, shortened by tests.
var (
	// panicGrace is how long the rest of a panic report may take to
	// arrive after its first line, for the console's last lines.
	panicGrace = 3 * time.Second
	// kvmProbe tells whether KVM works here.
	kvmProbe = CheckKVM
)

// qcow2Magic starts every qcow2 file.
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// Boot runs QEMU until the guest shows a login prompt or an expected
// marker (nil error), panics (ErrPanic), stops (ErrExited) or runs out of
// time (ErrTimeout); the Result says which in every case. QEMU is always
// killed before Boot returns, and cancelling ctx stops it at once.
func Boot(ctx context.Context, o Options) (Result, error) {
	o = o.withDefaults()
	if err := o.check(); err != nil {
		return Result{}, err
	}
	bin, err := hosttool.Find(o.Binary)
	if err != nil {
		return Result{}, fmt.Errorf("booting needs QEMU: %w", err)
	}
	accel, auto, err := chooseAccel(o.Accel, kvmProbe, o.Log)
	if err != nil {
		return Result{}, err
	}
	vars := ""
	if o.UEFI {
		if vars, err = copyVars(o.OVMFVars, o.TempDir); err != nil {
			return Result{}, err
		}
		defer os.Remove(vars)
	}
	res, err := o.run(ctx, bin, accel, vars)
	if auto && accel == "kvm" && res.Outcome == Exited && res.silent {
		fmt.Fprintf(o.Log, "qemu: QEMU failed to start with KVM; trying again with TCG\n")
		res, err = o.run(ctx, bin, "tcg", vars)
	}
	return res.Result, err
}

func (o Options) withDefaults() Options {
	if o.Binary == "" {
		o.Binary = DefaultBinary
	}
	if o.Memory == 0 {
		o.Memory = DefaultMemory
	}
	if o.CPUs == 0 {
		o.CPUs = DefaultCPUs
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.OVMFCode == "" {
		o.OVMFCode = DefaultOVMFCode
	}
	if o.OVMFVars == "" {
		o.OVMFVars = DefaultOVMFVars
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.Kernel != "" {
		o.Append = withSerialConsole(o.Append)
	}
	return o
}

// check validates the options against the files they name, and fills in
// the disk format.
func (o *Options) check() error {
	if o.Kernel == "" && o.Disk == "" {
		return errors.New("nothing to boot: give a kernel or a disk")
	}
	if o.Kernel == "" && (o.Initrd != "" || o.Append != "") {
		return errors.New("an initrd or kernel arguments need a kernel")
	}
	if o.Memory < 0 || o.CPUs < 0 || o.Timeout < 0 {
		return errors.New("memory, CPUs and timeout must not be negative")
	}
	for _, f := range []string{o.Kernel, o.Initrd, o.CDROM} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return err
		}
	}
	if o.Disk != "" {
		format, err := diskFormat(o.Disk)
		if err != nil {
			return err
		}
		switch {
		case o.DiskFormat == "":
			o.DiskFormat = format
		case o.DiskFormat != "raw" && o.DiskFormat != "qcow2":
			return fmt.Errorf("disk format %q: want raw or qcow2", o.DiskFormat)
		case o.DiskFormat != format:
			return fmt.Errorf("%s is a %s disk, not %s", o.Disk, format, o.DiskFormat)
		}
	}
	if o.UEFI {
		for _, f := range []string{o.OVMFCode, o.OVMFVars} {
			if _, err := os.Stat(f); err != nil {
				return firmwareErr(f, err)
			}
		}
	}
	return nil
}

// diskFormat tells a qcow2 file from a raw one.
func diskFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	magic := make([]byte, len(qcow2Magic))
	if _, err := io.ReadFull(f, magic); err == nil && bytes.Equal(magic, qcow2Magic) {
		return "qcow2", nil
	}
	return "raw", nil
}

// withSerialConsole adds console=ttyS0 to kernel arguments that lack it,
// so that the kernel and getty talk on the serial line Boot watches.
func withSerialConsole(args string) string {
	for _, a := range strings.Fields(args) {
		if a == "console=ttyS0" || strings.HasPrefix(a, "console=ttyS0,") {
			return args
		}
	}
	return strings.TrimSpace(args + " console=ttyS0")
}

// chooseAccel picks the accelerator: KVM when it works (or is asked
// for), else TCG. auto says the choice was Boot's.
func chooseAccel(requested string, probe func() error, log io.Writer) (accel string, auto bool, err error) {
	switch requested {
	case "kvm", "tcg":
		return requested, false, nil
	case "", "auto":
		if err := probe(); err != nil {
			fmt.Fprintf(log, "qemu: using TCG (slow emulation): KVM is not usable here: %v\n", err)
			return "tcg", true, nil
		}
		return "kvm", true, nil
	}
	return "", false, fmt.Errorf("accelerator %q: want kvm, tcg or auto", requested)
}

// firmwareErr says that the OVMF firmware file path is unusable, and
// which package provides it.
func firmwareErr(path string, err error) error {
	if _, known := hosttool.Packages[path]; known && errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("UEFI boot needs the OVMF firmware: %w", hosttool.Missing(path))
	}
	return fmt.Errorf("UEFI boot needs the OVMF firmware (Debian package ovmf): %w", err)
}

// copyVars copies the OVMF variable store template for one boot.
func copyVars(template, dir string) (string, error) {
	src, err := os.Open(template)
	if err != nil {
		return "", firmwareErr(template, err)
	}
	defer src.Close()
	dst, err := os.CreateTemp(dir, "OVMF_VARS-*.fd")
	if err != nil {
		return "", fmt.Errorf("copying the UEFI variables: %w", err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		os.Remove(dst.Name())
		return "", fmt.Errorf("copying the UEFI variables: %w", err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(dst.Name())
		return "", fmt.Errorf("copying the UEFI variables: %w", err)
	}
	return dst.Name(), nil
}

// args is QEMU's command line, without the binary.
func (o *Options) args(accel, vars string) []string {
	a := []string{
		"-nodefaults", "-no-user-config",
		"-machine", "q35", "-accel", accel,
		"-m", strconv.Itoa(o.Memory), "-smp", strconv.Itoa(o.CPUs),
		"-display", "none", "-serial", "stdio", "-no-reboot",
	}
	if o.UEFI {
		a = append(a,
			"-drive", "if=pflash,format=raw,readonly=on,file="+escapeComma(o.OVMFCode),
			"-drive", "if=pflash,format=raw,file="+escapeComma(vars))
	}
	if o.Disk != "" {
		a = append(a, "-drive", "file="+escapeComma(o.Disk)+",format="+o.DiskFormat+",if=virtio", "-snapshot")
	}
	if o.CDROM != "" {
		a = append(a, "-drive", "file="+escapeComma(o.CDROM)+",format=raw,media=cdrom,readonly=on")
	}
	if o.Kernel != "" {
		a = append(a, "-kernel", o.Kernel)
		if o.Initrd != "" {
			a = append(a, "-initrd", o.Initrd)
		}
		a = append(a, "-append", o.Append)
	}
	if !o.NoNetwork {
		a = append(a, "-nic", "user,model=virtio-net-pci")
	}
	return a
}

// escapeComma quotes a value for QEMU's option syntax.
func escapeComma(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// what names the success Boot waits for, for messages.
func (o *Options) what() string {
	switch len(o.Expect) {
	case 0:
		return "a login prompt"
	case 1:
		return strconv.Quote(o.Expect[0])
	}
	q := make([]string, len(o.Expect))
	for i, m := range o.Expect {
		q[i] = strconv.Quote(m)
	}
	return "one of " + strings.Join(q, ", ")
}

// attempt is one run of QEMU.
type attempt struct {
	Result
	silent bool // the guest printed nothing
}

// run starts QEMU, watches its console and kills it.
func (o *Options) run(ctx context.Context, bin, accel, vars string) (attempt, error) {
	args := o.args(accel, vars)
	res := attempt{Result: Result{Accel: accel, Command: append([]string{bin}, args...)}}
	fmt.Fprintf(o.Log, "qemu: %s\n", shquote.Join(res.Command))

	pr, pw, err := os.Pipe()
	if err != nil {
		return res, err
	}
	defer pr.Close()
	stderr := &hosttool.Tail{W: o.Log, Size: 4096}
	// Its own process group, so that killing it kills whatever it
	// started; and killed with us if we die first.
	cmd, err := hosttool.Command(context.Background(), bin, args...)
	if err != nil {
		pw.Close()
		return res, err
	}
	cmd.Stdout = pw
	cmd.Stderr = stderr
	start := time.Now()
	waited, err := hosttool.Start(cmd)
	pw.Close()
	if err != nil {
		return res, fmt.Errorf("starting QEMU: %w", err)
	}
	kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	w := newWatcher(o.Expect, len(o.Expect) == 0)
	events := make(chan event, 16)
	go func() {
		defer close(events)
		buf := make([]byte, 32<<10)
		for {
			n, err := pr.Read(buf)
			if n > 0 {
				o.Console.Write(buf[:n])
				for _, ev := range w.feed(buf[:n]) {
					events <- ev
				}
			}
			if err != nil {
				for _, ev := range w.finish() {
					events <- ev
				}
				return
			}
		}
	}()

	timer := time.NewTimer(o.Timeout)
	defer timer.Stop()
	var (
		grace     <-chan time.Time
		panicLine string
		waitErr   error
		exited    bool
		ctxErr    error
	)
loop:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				// End of output: QEMU is gone (or has closed its stdout).
				if panicLine != "" {
					res.Outcome = Panic
				} else {
					res.Outcome = Exited
				}
				break loop
			}
			switch ev.kind {
			case evExpect, evLogin:
				if panicLine == "" {
					res.Outcome, res.Marker = Expected, ev.text
					if ev.kind == evLogin {
						res.Outcome = Login
					}
					break loop
				}
			case evPanic:
				if panicLine == "" {
					panicLine = ev.text
					grace = time.After(panicGrace)
				}
			case evPanicEnd:
				res.Outcome = Panic
				break loop
			}
		case <-grace:
			res.Outcome = Panic
			break loop
		case waitErr = <-waited:
			// QEMU ended; what it printed last may still be in the pipe,
			// unless something it started holds the pipe open.
			exited = true
			kill()
		case <-timer.C:
			res.Outcome = Timeout
			break loop
		case <-ctx.Done():
			ctxErr = ctx.Err()
			break loop
		}
	}
	res.Elapsed = time.Since(start)
	if res.Outcome == Exited && !exited {
		// QEMU closes its output while it exits: let it finish, for
		// its true exit status.
		select {
		case waitErr = <-waited:
			exited = true
		case <-time.After(2 * time.Second):
		}
	}
	kill()
	if !exited {
		waitErr = <-waited
	}
	for range events {
		// let the reader finish
	}
	res.Tail = w.lastLines()
	res.silent = w.bytes == 0

	switch {
	case ctxErr != nil:
		res.Outcome = ""
		return res, fmt.Errorf("boot interrupted: %w", ctxErr)
	case res.Outcome == Panic:
		if panicLine == "" {
			panicLine = res.Marker
		}
		res.Marker = panicLine
		return res, fmt.Errorf("%w after %s: %s", ErrPanic, res.Elapsed.Round(time.Second), panicLine)
	case res.Outcome == Timeout:
		return res, fmt.Errorf("%w after %s waiting for %s", ErrTimeout, o.Timeout, o.what())
	case res.Outcome == Exited:
		if waitErr != nil { // QEMU failed; when the guest stops, it exits 0
			return res, fmt.Errorf("%w (%v) before %s: %s", ErrExited, waitErr, o.what(), stderr.Last(3))
		}
		return res, fmt.Errorf("%w: the guest powered off or rebooted before %s", ErrExited, o.what())
	}
	return res, nil
}
