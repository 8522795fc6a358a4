package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/fgimg/fgimg/cache/catalog"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fgimg/fgimg/engine"
	"github.com/fgimg/fgimg/internal/qemu"
	"github.com/fgimg/fgimg/lang"
	"github.com/fgimg/fgimg/planner"
	"github.com/fgimg/fgimg/targets"
)

func cmdBoot(ctx context.Context, args []string, out, errw io.Writer) int {
	fs := flag.NewFlagSet("fgimg boot", flag.ContinueOnError)
	var bf buildFlags // for -build, and -o, -var and -var-file for the boot
	bf.register(fs)
	accel := fs.String("accel", "auto", "QEMU accelerator: kvm, tcg, or auto (KVM when it works here)")
	memory := fs.Int("memory", qemu.DefaultMemory, "guest memory in `MiB`")
	smp := fs.Int("smp", qemu.DefaultCPUs, "number of guest `CPUs`")
	uefi := fs.Bool("uefi", false, "boot a hybrid disk with UEFI firmware (OVMF) instead of BIOS")
	var expect []string
	fs.Func("expect", "succeed when the console shows `TEXT` instead of a login prompt (repeatable: any of them)", func(s string) error {
		if s == "" {
			return errors.New("empty marker")
		}
		expect = append(expect, s)
		return nil
	})
	timeout := fs.Duration("timeout", qemu.DefaultTimeout, "give up after this long")
	logFile := fs.String("log", "", "write the serial console to `FILE` (default OUT/<target>/boot.log)")
	quiet := fs.Bool("quiet", false, "do not show the console; only log it")
	build := fs.Bool("build", false, "build the target first, as fgimg build -only TARGET with the other build flags given here")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), `Usage: fgimg boot [flags] TARGET [PATH]

Boots a built disk (raw, qcow2, openstack, opennebula) or netboot target in
QEMU as a smoke test: exits 0 when the guest's serial console reaches a
login prompt (or -expect TEXT), 1 on a kernel panic, if the guest stops,
or on timeout. Disks are used with
-snapshot: the boot never changes them. Build the target first with
fgimg build -o OUT -only TARGET PATH, or give -build: boot then takes
every flag of build and passes it on.

Flags:`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args, out, errw)
	if err != nil {
		return flagResult(err, errw)
	}
	if len(pos) == 0 || (len(pos) == 1 && strings.ContainsRune(pos[0], '/')) {
		return flagResult(usageError{"boot needs a target name: fgimg boot TARGET [PATH]"}, errw)
	}
	switch {
	case *accel != "auto" && *accel != "kvm" && *accel != "tcg":
		return flagResult(usageError{fmt.Sprintf("-accel %s: want kvm, tcg or auto", *accel)}, errw)
	case *memory < 64:
		return flagResult(usageError{"-memory must be at least 64 (MiB)"}, errw)
	case *smp < 1:
		return flagResult(usageError{"-smp must be at least 1"}, errw)
	case *timeout <= 0:
		return flagResult(usageError{"-timeout must be positive"}, errw)
	}
	name, paths := pos[0], pos[1:]
	var cfg *lang.Config
	var plan *planner.Plan
	if *build {
		b := bf
		b.only = append(slices.Clone(bf.only), name)
		var code int
		if code, cfg, plan = b.build(ctx, paths, out, errw); code != exitOK {
			return code
		}
	} else if cfg, plan = bf.load(paths, errw); plan == nil {
		return exitFailed
	}
	target := findTarget(plan, name)
	if target == nil {
		var names []string
		for _, t := range cfg.Targets {
			names = append(names, t.Name)
		}
		list := "it has none"
		if len(names) > 0 {
			list = "the targets are " + strings.Join(names, ", ")
		}
		fmt.Fprintf(errw, "fgimg: there is no target %q in %s; %s.\n", name, cfg.Dir, list)
		return exitFailed
	}
	boot, err := target.Kind.Boot(target.Write.Spec.(targets.Spec))
	if err != nil {
		fmt.Fprintf(errw, "fgimg: target %q is a %s target, which does not boot: %s\n", name, target.Kind.Name(), err)
		return exitFailed
	}
	if boot.Root {
		fmt.Fprintf(errw, "fgimg: target %q is a %s target: its artifact is the root filesystem the node's image is built from, not a boot; fgimg vet -boot %s boots that image as the node would\n",
			name, target.Kind.Name(), name)
		return exitFailed
	}
	opts, err := bootOptions(target, boot, *uefi)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	dir := filepath.Join(bf.outDir, name)
	m, err := readManifest(dir)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: target %q has not been built in %s (%v).\nBuild it first: fgimg build -o %s -only %s %s\n",
			name, bf.outDir, err, bf.outDir, name, pathsArg(paths))
		return exitFailed
	}
	if m.Kind != target.Kind.Name() {
		fmt.Fprintf(errw, "fgimg: %s holds a %s target, but %q is a %s target now; rebuild it: fgimg build -o %s -only %s %s\n",
			dir, m.Kind, name, target.Kind.Name(), bf.outDir, name, pathsArg(paths))
		return exitFailed
	}
	if stale(plan, m) {
		fmt.Fprintf(errw, "fgimg: note: %s was built from another version of the configuration; to boot the current one: fgimg build -o %s -only %s %s\n",
			dir, bf.outDir, name, pathsArg(paths))
	}
	if err := m.attach(&opts, boot, dir); err != nil {
		fmt.Fprintf(errw, "fgimg: %s: %s; rebuild it: fgimg build -o %s -only %s %s\n", dir, err, bf.outDir, name, pathsArg(paths))
		return exitFailed
	}

	if len(m.Stages) > 0 {
		recordUse(bf.cacheDir, m.Stages[len(m.Stages)-1], m.Target, catalog.UseBoot, errw)
	}
	if *logFile == "" {
		*logFile = filepath.Join(dir, "boot.log")
	}
	lf, err := os.Create(*logFile)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return exitFailed
	}
	defer lf.Close()
	opts.Console = lf
	if !*quiet {
		opts.Console = io.MultiWriter(lf, out)
	}
	opts.Accel, opts.Memory, opts.CPUs, opts.Expect, opts.Timeout = *accel, *memory, *smp, expect, *timeout
	opts.Log = errw

	firmware := "BIOS"
	switch {
	case opts.UEFI:
		firmware = "UEFI"
	case opts.Kernel != "":
		firmware = "direct kernel boot"
	}
	fmt.Fprintf(errw, "fgimg: booting %s (%s, %s); console log: %s\n", name, target.Kind.Name(), firmware, *logFile)
	res, err := qemu.Boot(ctx, opts)
	if lerr := lf.Close(); err == nil && lerr != nil {
		err = lerr
	}
	if err == nil {
		what := "a login prompt"
		if res.Outcome == qemu.Expected {
			what = fmt.Sprintf("%q", res.Marker)
		}
		fmt.Fprintf(errw, "\nfgimg: %s booted: %s after %s (%s).\n", name, what, res.Elapsed.Round(100*time.Millisecond), res.Accel)
		return exitOK
	}
	if ctx.Err() != nil {
		fmt.Fprintf(errw, "\nfgimg: Interrupted: QEMU stopped.\n")
		return exitFailed
	}
	fmt.Fprintf(errw, "\nfgimg: %s failed to boot: %s\n", name, err)
	if res.Outcome == "" {
		return exitFailed
	}
	if len(res.Tail) == 0 {
		fmt.Fprintf(errw, "The console stayed silent.\n")
	} else {
		fmt.Fprintf(errw, "Last lines of the console (all of it in %s):\n", *logFile)
		for _, l := range res.Tail {
			fmt.Fprintf(errw, "  %s\n", l)
		}
	}
	if res.Outcome == qemu.Timeout && opts.Kernel == "" && !hasSerialConsole(boot.KernelArgs) {
		fmt.Fprintf(errw, "Hint: target %q's kernel_args lack console=ttyS0, so its kernel may not use the serial console fgimg watches.\n", name)
	}
	return exitFailed
}

func findTarget(plan *planner.Plan, name string) *planner.Target {
	for _, t := range plan.Targets {
		if t.Target.Name == name {
			return t
		}
	}
	return nil
}

// bootOptions says how a target boots, from what its kind says.
func bootOptions(t *planner.Target, boot *targets.Boot, forceUEFI bool) (qemu.Options, error) {
	var o qemu.Options
	if arch := t.Image.Image.Meta.Arch; arch != "" && arch != "amd64" {
		return o, fmt.Errorf("target %q is an %s image; fgimg boot runs amd64 images only", t.Target.Name, arch)
	}
	if boot.Kernel != "" {
		o.Append = strings.Join(boot.KernelArgs, " ")
	}
	switch boot.Firmware {
	case targets.FirmwareBIOS:
		if forceUEFI {
			return o, fmt.Errorf("-uefi: target %q boots with BIOS only (boot = \"bios\")", t.Target.Name)
		}
	case targets.FirmwareUEFI:
		o.UEFI = true
	default: // both work; BIOS unless asked
		o.UEFI = forceUEFI
	}
	return o, nil
}

// manifest is OUT/<target>/manifest.json.
type manifest engine.Manifest

func readManifest(dir string) (*manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("no %s", filepath.Join(dir, "manifest.json"))
		}
		return nil, err
	}
	var m manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "manifest.json"), err)
	}
	return &m, nil
}

// attach points o at the artifacts in dir that boot starts: those of
// the media types the kind names, as manifest.json lists them.
func (m *manifest) attach(o *qemu.Options, boot *targets.Boot, dir string) error {
	find := func(mediaType string, prefix bool, what string) (string, error) {
		for _, a := range m.Artifacts {
			if a.MediaType == mediaType || (prefix && strings.HasPrefix(a.MediaType, mediaType+"+")) {
				p := filepath.Join(dir, filepath.FromSlash(a.Path))
				if _, err := os.Stat(p); err != nil {
					return "", err
				}
				return p, nil
			}
		}
		return "", fmt.Errorf("manifest.json lists no %s (%s)", what, mediaType)
	}
	var err error
	if boot.Disk != "" {
		o.DiskFormat = boot.Format
		o.Disk, err = find(boot.Disk, false, "disk")
		return err
	}
	if o.Kernel, err = find(boot.Kernel, false, "kernel"); err != nil {
		return err
	}
	o.Initrd, err = find(boot.Initrd, true, "initramfs")
	return err
}

// stale reports whether the artifacts were built from something other
// than what the configuration now describes.
func stale(plan *planner.Plan, m *manifest) bool {
	for _, t := range plan.Targets {
		if t.Target.Name == m.Target {
			return len(m.Stages) == 0 || m.Stages[len(m.Stages)-1] != t.Write.Digest
		}
	}
	return false
}

func hasSerialConsole(args []string) bool {
	for _, a := range args {
		if a == "console=ttyS0" || strings.HasPrefix(a, "console=ttyS0,") {
			return true
		}
	}
	return false
}

// pathsArg is PATH as the user gave it, for a suggested command line.
func pathsArg(paths []string) string {
	if len(paths) == 0 {
		return "."
	}
	return strings.Join(paths, " ")
}
