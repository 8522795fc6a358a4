package stages

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fgimg/fgimg/internal/fsat"
	"github.com/fgimg/fgimg/internal/layer"

	"github.com/fgimg/fgimg/lang"
)

func runBootstrap(ctx context.Context, s *Bootstrap, env *Env) error {
	switch s.Tool {
	case "tar":
		return bootstrapTar(s, env)
	case "debootstrap", "mmdebstrap":
		return bootstrapDebian(ctx, s, env)
	}
	return fmt.Errorf("unknown bootstrap tool %q (want debootstrap, mmdebstrap or tar)", s.Tool)
}

// debootstrapVariants are the variants debootstrap itself knows; the
// others that mmdebstrap has are refused rather than silently changed.
var debootstrapVariants = map[string]bool{"minbase": true, "buildd": true, "fakechroot": true}

// debianArgs returns the tool's command line for the spec.
func debianArgs(s *Bootstrap, arch, root string) ([]string, error) {
	if s.Suite == "" {
		return nil, fmt.Errorf("%s needs a suite", s.Tool)
	}
	mirror := s.Mirror
	if mirror == "" {
		mirror = lang.DefaultMirror
	}
	for _, v := range append(append([]string{s.Suite, mirror, s.Variant, arch}, s.Components...), s.Include...) {
		if strings.HasPrefix(v, "-") && v != "-" {
			return nil, fmt.Errorf("%s: %q is not a valid argument", s.Tool, v)
		}
	}
	var args []string
	switch s.Tool {
	case "debootstrap":
		switch {
		case s.Variant == "" || s.Variant == "debootstrap" || s.Variant == "-":
			// debootstrap's default set
		case debootstrapVariants[s.Variant]:
			args = append(args, "--variant="+s.Variant)
		default:
			return nil, fmt.Errorf("debootstrap has no variant %q (it knows minbase, buildd and fakechroot; use mmdebstrap for more)", s.Variant)
		}
		if arch != "" {
			args = append(args, "--arch="+arch)
		}
	case "mmdebstrap":
		args = append(args, "--aptopt=Acquire::Retries \"3\"") // debootstrap has no retries
		if s.Variant != "" {
			args = append(args, "--variant="+s.Variant)
		}
		if arch != "" {
			args = append(args, "--architectures="+arch)
		}
	}
	if len(s.Components) > 0 {
		args = append(args, "--components="+strings.Join(s.Components, ","))
	}
	if len(s.Include) > 0 {
		args = append(args, "--include="+strings.Join(s.Include, ","))
	}
	return append(args, s.Suite, root, mirror), nil
}

// bootstrapTarget is where a bootstrap tool finds the root filesystem
// in its sandbox (sandbox.Spec.Target).
const bootstrapTarget = "/target"

// debootstrapContainer tells debootstrap it runs in a container that can
// make no device nodes (it would refuse the target, or fail making them).
// Device nodes are not part of an image: the sandbox, and a booted
// system, mount /dev.
const debootstrapContainer = "container=lxc"

// bootstrapDebian runs debootstrap or mmdebstrap in the sandbox, as a
// host tool (the host's system directories read-only, the root filesystem
// at bootstrapTarget) with the network, then strips what the image should
// not keep. debootstrap runs in two steps: its first stage downloads and
// unpacks the packages as the host tool; its second stage, which runs the
// packages' maintainer scripts, runs inside the new root filesystem
// without the network, as every other command in an image does.
// mmdebstrap (in its root mode) runs the maintainer scripts in a chroot
// of the host tool's sandbox, with the sandbox's device nodes in its /dev
// but without /proc and /sys, which it may not mount there.
func bootstrapDebian(ctx context.Context, s *Bootstrap, env *Env) error {
	arch := s.Arch
	if arch == "" {
		arch = env.Arch
	}
	args, err := debianArgs(s, arch, bootstrapTarget)
	if err != nil {
		return err
	}
	pick := linesWithPrefix("E:", "W: Failure")
	var toolEnv []string
	devices := false
	switch s.Tool {
	case "debootstrap":
		args = append([]string{"--foreign"}, args...)
		toolEnv = []string{debootstrapContainer}
	case "mmdebstrap":
		// The root's /dev holds the sandbox's device nodes (mmdebstrap
		// may neither make nor mount them), so the root is not empty.
		args = append([]string{"--mode=root", "--skip=check/empty"}, args...)
		devices = true
	}
	if err := hostToolOnRoot(ctx, env, online, devices, s.Tool, pick, toolEnv, s.Tool, args...); err != nil {
		if s.Tool == "debootstrap" && ctx.Err() == nil {
			logDebootstrapLog(env)
		}
		return err
	}
	if s.Tool == "debootstrap" {
		err := runInImage(ctx, env, offline, "debootstrap --second-stage", pick,
			[]string{debootstrapContainer}, "/debootstrap/debootstrap", "--second-stage")
		if err != nil {
			if ctx.Err() == nil {
				logDebootstrapLog(env)
			}
			return err
		}
	}
	return cleanDebianRoot(env)
}

// debootstrapLog is where debootstrap keeps the output of the commands it
// runs in the target, which its own messages only point to.
const debootstrapLog = "/debootstrap/debootstrap.log"

// logDebootstrapLog copies the end of a failed debootstrap's own log to
// the stage log, since the root filesystem holding it is thrown away.
func logDebootstrapLog(env *Env) {
	r, err := openRoot(env)
	if err != nil {
		return
	}
	defer r.close()
	b, err := r.readFile(debootstrapLog)
	if err != nil || len(b) == 0 {
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	fmt.Fprintf(env.Log, "fgimg: the end of debootstrap's log (%s in the root filesystem):\n%s\n", debootstrapLog, strings.Join(lines, "\n"))
}

// cleanDebianRoot removes downloaded packages and package lists (the
// image is smaller and no stale lists are kept) and the build host's
// /etc/resolv.conf and /etc/hostname that debootstrap copies in.
func cleanDebianRoot(env *Env) error {
	r, err := openRoot(env)
	if err != nil {
		return err
	}
	defer r.close()
	isDeb := func(name string) bool { return strings.HasSuffix(name, ".deb") }
	if err := r.clearDir("/var/cache/apt/archives", func(name string) bool { return !isDeb(name) }); err != nil {
		return fmt.Errorf("removing downloaded packages: %w", err)
	}
	if err := r.clearDir("/var/lib/apt/lists", nil); err != nil {
		return fmt.Errorf("removing package lists: %w", err)
	}
	for _, p := range []string{"/etc/resolv.conf", "/etc/hostname"} {
		// Only a plain file is the host's copy: a symlink (systemd-resolved's
		// stub, when included) belongs to the image. debootstrap's root is
		// fresh and its /etc a real directory, so Lstat here is safe.
		if fi, err := os.Lstat(filepath.Join(env.Root, p)); err == nil && !fi.Mode().IsRegular() {
			continue
		}
		if err := r.remove(p); err != nil {
			return fmt.Errorf("removing the build host's %s: %w", p, err)
		}
	}
	fmt.Fprintln(env.Log, "fgimg: removed downloaded packages, package lists and the build host's /etc/resolv.conf and /etc/hostname")
	return scrubBuildTraces(r, env)
}

// bootstrapTar extracts a root filesystem tarball (plain, gzip or zstd)
// into env.Root, checking that it is still the one planned.
func bootstrapTar(s *Bootstrap, env *Env) error {
	if s.SourcePath == "" {
		return fmt.Errorf("tar bootstrap: no tarball given")
	}
	f, err := fsat.OpenRegular(s.SourcePath)
	if err != nil {
		return fmt.Errorf("tar bootstrap: %w", err)
	}
	defer f.Close()
	fmt.Fprintf(env.Log, "fgimg: extracting %s\n", s.SourcePath)
	var r io.Reader = f
	verify := s.Source != "" && s.Source.Validate() == nil
	var v interface {
		io.Writer
		Verified() bool
	}
	if verify {
		v = s.Source.Verifier()
		r = io.TeeReader(f, v)
	}
	if err := layer.Apply(r, env.Root, layer.ApplyOptions{}); err != nil {
		return fmt.Errorf("tar bootstrap: %w", err)
	}
	if verify {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return fmt.Errorf("tar bootstrap: reading %s: %w", s.SourcePath, err)
		}
		if !v.Verified() {
			return fmt.Errorf("tar bootstrap: %s changed since the plan was made (its digest is no longer %s); plan again", s.SourcePath, s.Source)
		}
	}
	return nil
}
