package stages

import (
	"context"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/fsat"
)

// packageManagers are looked for in the image, in this order.
var packageManagers = []string{"apt-get", "dnf", "yum", "apk"}

func runPackages(ctx context.Context, s *Packages, env *Env) error {
	if len(s.Names) == 0 {
		return nil
	}
	for _, n := range s.Names {
		if n == "" || strings.HasPrefix(n, "-") || strings.ContainsAny(n, " \t\n") {
			return fmt.Errorf("%q is not a package name", n)
		}
	}
	r, err := openRoot(env)
	if err != nil {
		return err
	}
	defer r.close()
	pm, pmPath := findPackageManager(r)
	if pm == "" {
		return fmt.Errorf("the image has no package manager to install %s with (looked for %s in %s)",
			strings.Join(s.Names, ", "), strings.Join(packageManagers, ", "), standardPath)
	}
	return install(ctx, r, env, pm, pmPath, s.Names)
}

// install installs names with the image's package manager pm (at path),
// then removes what records the build's time (scrubBuildTraces): every
// stage that installs packages goes through here.
func install(ctx context.Context, r *root, env *Env, pm, path string, names []string) error {
	var err error
	switch pm {
	case "apt-get":
		err = installApt(ctx, r, env, path, names)
	case "dnf", "yum":
		err = installDnf(ctx, env, pm, path, names)
	case "apk":
		err = installApk(ctx, env, path, names)
	default:
		return fmt.Errorf("fgimg does not install packages with %s", pm)
	}
	if err != nil {
		return err
	}
	return scrubBuildTraces(r, env)
}

// findPackageManager returns the first of packageManagers the image has,
// and its path there; "" when it has none.
func findPackageManager(r *root) (name, path string) {
	for _, name := range packageManagers {
		if p := r.lookPath(name); p != "" {
			return name, p
		}
	}
	return "", ""
}

// aptErrors are apt's own error lines and dpkg's.
var aptErrors = linesWithPrefix("E:", "dpkg: error", "dpkg: dependency problems")

// aptEnv keeps apt and debconf from asking anything.
var aptEnv = []string{"DEBIAN_FRONTEND=noninteractive", "DEBCONF_NONINTERACTIVE_SEEN=true", "APT_LISTCHANGES_FRONTEND=none"}

const policyRcD = "/usr/sbin/policy-rc.d"

// policyRcDScript tells invoke-rc.d that no service may be started or
// stopped (exit 101: action forbidden).
const policyRcDScript = "#!/bin/sh\n# Written by fgimg while installing packages: no service starts in an image build.\nexit 101\n"

// aptRetries has apt retry a failed download, with backoff.
const aptRetries = "Acquire::Retries=3"

// aptNoLanguages skips the package descriptions' translations, a third
// of what apt-get update fetches, which the lists' removal throws away.
const aptNoLanguages = "Acquire::Languages=none"

// dpkgUnsafeIO has dpkg skip its fsync before each rename: an
// interrupted stage is thrown away whole, so the syncs buy nothing (as
// in Debian's container images, /etc/dpkg/dpkg.cfg.d/docker-apt-speedup).
const dpkgUnsafeIO = "Dpkg::Options::=--force-unsafe-io"

func installApt(ctx context.Context, r *root, env *Env, aptGet string, names []string) (err error) {
	restore, err := holdServices(r)
	if err != nil {
		return fmt.Errorf("writing %s: %w", policyRcD, err)
	}
	defer func() {
		if rerr := restore(); rerr != nil && err == nil {
			err = rerr
		}
	}()
	// A mirror's passing hiccup is retried, not a failed build.
	if err := runInImage(ctx, env, online, "apt-get update", aptErrors, aptEnv, aptGet, "update", "-o", aptRetries, "-o", aptNoLanguages); err != nil {
		return err
	}
	args := append([]string{aptGet, "install", "-y", "-o", aptRetries, "-o", "Dpkg::Options::=--force-confold", "-o", dpkgUnsafeIO}, names...)
	if err := runInImage(ctx, env, online, "apt-get install", aptErrors, aptEnv, args...); err != nil {
		return err
	}
	if err := runInImage(ctx, env, online, "apt-get clean", aptErrors, aptEnv, aptGet, "clean"); err != nil {
		return err
	}
	if err := r.clearDir("/var/lib/apt/lists", nil); err != nil {
		return fmt.Errorf("removing package lists: %w", err)
	}
	return nil
}

// holdServices installs policy-rc.d and returns the function that puts
// back what was there before (usually nothing): an existing one is moved
// aside meanwhile, whatever its type.
func holdServices(r *root) (restore func() error, err error) {
	rel, _ := relPath(policyRcD)
	dirfd, name, err := r.resolve(rel, true, false)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	var st unix.Stat_t
	saved := ""
	switch err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil:
		saved = tempName(name+".saved", 0)
		if err := unix.Renameat(dirfd, name, dirfd, saved); err != nil {
			return nil, err
		}
	case err != unix.ENOENT:
		return nil, err
	}
	put := func(dirfd int) error {
		if saved != "" {
			return unix.Renameat(dirfd, saved, dirfd, name)
		}
		return fsat.RemoveAll(dirfd, name)
	}
	err = replaceFile(dirfd, name, func(f *os.File) error {
		_, err := f.WriteString(policyRcDScript)
		return err
	}, 0o755, 0, 0)
	if err != nil {
		_ = put(dirfd)
		return nil, err
	}
	// No descriptor is held while the commands run (they get the root
	// mounted anew): restoring resolves the directory again.
	return func() error {
		dirfd, _, err := r.resolve(rel, false, false)
		if err == nil {
			defer unix.Close(dirfd)
			err = put(dirfd)
		}
		if err != nil {
			return fmt.Errorf("restoring %s: %w", policyRcD, err)
		}
		return nil
	}, nil
}

// dnfErrors are the lines in which dnf (4 and 5) and yum say what failed.
func dnfErrors(l string) bool {
	return strings.Contains(l, "No match for argument") ||
		strings.HasPrefix(l, "Error:") || strings.HasPrefix(l, "error:") ||
		strings.HasPrefix(l, "Failed to resolve") || strings.HasPrefix(l, "No package ")
}

func installDnf(ctx context.Context, env *Env, pm, path string, names []string) error {
	args := append([]string{path, "install", "-y"}, names...)
	if err := runInImage(ctx, env, online, pm+" install", dnfErrors, nil, args...); err != nil {
		return err
	}
	return runInImage(ctx, env, online, pm+" clean", dnfErrors, nil, path, "clean", "all")
}

// apkErrors are apk's ERROR lines and the package lines that follow them.
func apkErrors(l string) bool {
	return strings.HasPrefix(l, "ERROR:") || strings.Contains(l, "(no such package)")
}

func installApk(ctx context.Context, env *Env, path string, names []string) error {
	args := append([]string{path, "add", "--no-cache"}, names...)
	return runInImage(ctx, env, online, "apk add", apkErrors, nil, args...)
}
