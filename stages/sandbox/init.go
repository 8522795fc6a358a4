package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/rootpath"
)

// initArg0 is the argv[0] that marks a re-executed binary as a sandbox
// init; it is also what /proc/1/cmdline shows inside the sandbox.
const initArg0 = "fgimg-sandbox-init"

// File descriptors Run passes to the init.
const (
	configFD = 3
	statusFD = 4
)

// setupFailed is the init's exit status when it could not start the
// command; Run reads the reason from the status pipe.
const setupFailed = 125

// Init must be the first call in main of every binary that uses Run, and
// in TestMain of tests that do. In a process started by Run as a sandbox
// init it runs the init and exits; otherwise it returns at once.
func Init() {
	if len(os.Args) == 0 {
		return
	}
	if os.Args[0] == usernsArg0 {
		holdUserNS()
	}
	if os.Args[0] != initArg0 {
		return
	}
	// Namespaces, root and working directory are set for the whole
	// process; the lock keeps the thread that starts the command (its
	// parent death signal is tied to that thread) alive.
	runtime.LockOSThread()
	os.Exit(initMain())
}

func initMain() int {
	unix.CloseOnExec(configFD)
	unix.CloseOnExec(statusFD)
	status := os.NewFile(statusFD, "status")
	report := func(st initStatus) {
		_ = json.NewEncoder(status).Encode(st)
	}
	fail := func(err error) int {
		report(initStatus{Error: err.Error()})
		return setupFailed
	}
	// The init ends with kill(-1), which outside a PID namespace of its
	// own would kill every process on the host.
	if os.Getpid() != 1 {
		return fail(errors.New("the sandbox init is not PID 1 of a new PID namespace"))
	}

	// The init is PID 1: signals it has no handler for are ignored,
	// but Go installs handlers for all of them. Catch the usual ones so
	// that a command cannot make the init die before cleaning up.
	// (Caught, unlike ignored, signals are reset for the command.)
	signal.Notify(make(chan os.Signal, 1), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)

	// Reading the config also detects a parent that died before writing
	// it: the pipe then ends early.
	var cfg initConfig
	cfgFile := os.NewFile(configFD, "config")
	if err := json.NewDecoder(cfgFile).Decode(&cfg); err != nil {
		return fail(fmt.Errorf("reading init configuration: %w", err))
	}
	cfgFile.Close()

	var r rootfs
	if err := r.setup(cfg); err != nil {
		r.cleanup()
		return fail(err)
	}
	st, err := runCommand(cfg)
	r.cleanup()
	if err != nil {
		return fail(err)
	}
	report(st)
	if st.Signal != 0 {
		return 128 + st.Signal
	}
	return st.Code
}

// rootfs is the init's mounted root and what it added to it.
type rootfs struct {
	root   string   // the root's path before pivoting; "" afterwards
	mounts []string // mount points inside the root, in mount order
	stubs  []string // paths inside the root created as mount points
	// parents holds the times of the existing directories stubs were
	// created in, to restore once the stubs are gone.
	parents []savedTimes
}

type savedTimes struct {
	path  string
	times []unix.Timespec // atime, mtime
}

// path returns p (absolute inside the root) as seen by the init now.
func (r *rootfs) path(p string) string {
	if r.root == "" {
		return p
	}
	return filepath.Join(r.root, p)
}

func (r *rootfs) mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, r.path(target), fstype, flags, data); err != nil {
		what := fstype
		if flags&unix.MS_BIND != 0 {
			what = "bind " + source
		}
		return fmt.Errorf("mounting %s on %s: %w", what, target, err)
	}
	r.mounts = append(r.mounts, target)
	return nil
}

func (r *rootfs) setup(cfg initConfig) error {
	// Mounts made from here on must not propagate to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	if err := unix.Sethostname([]byte(Hostname)); err != nil {
		return fmt.Errorf("setting host name: %w", err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	root := cfg.Upper
	if !filepath.IsAbs(root) {
		root = filepath.Join(cwd, root)
	}
	// The overlay goes on top of the upper directory itself: its layers
	// are resolved before it is attached, and no other directory is
	// needed as a mount point.
	if len(cfg.Lower) == 0 {
		if err := unix.Mount(cfg.Upper, cfg.Upper, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting root %s: %w", root, err)
		}
	} else {
		// The init runs in a user namespace of its own: trusted.*
		// attributes are out of reach there.
		opts, err := overlayOptions(cfg.Lower, cfg.Upper, cfg.Work, true)
		if err != nil {
			return err
		}
		if err := unix.Mount("overlay", cfg.Upper, "overlay", 0, opts); err != nil {
			return fmt.Errorf("mounting overlay (%s) on %s: %w", opts, root, err)
		}
	}
	r.root = root
	if cfg.Target != "" {
		if err := r.hostRoot(cfg); err != nil {
			return err
		}
	}

	if err := r.stubDir("/proc", 0o555); err != nil {
		return err
	}
	if err := r.mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := r.stubDir("/sys", 0o555); err != nil {
		return err
	}
	if err := r.mountSys(); err != nil {
		return err
	}
	if err := r.stubDir("/dev", 0o755); err != nil {
		return err
	}
	if err := r.mountDev(); err != nil {
		return err
	}
	if err := r.mountResolvConf(cfg.ResolvConf); err != nil {
		return err
	}
	if err := r.protectKernelFiles(); err != nil {
		return err
	}
	if err := loopbackUp(); err != nil {
		return err
	}
	return r.pivot()
}

// stubDir makes sure p, directly below the root, is a directory to mount
// on, creating it if missing. It refuses symlinks, which could lead out of
// the root.
func (r *rootfs) stubDir(p string, mode os.FileMode) error {
	fi, err := os.Lstat(r.path(p))
	switch {
	case err == nil && fi.IsDir():
		return nil
	case err == nil:
		return fmt.Errorf("root filesystem: %s is not a directory (%s)", p, fi.Mode().Type())
	case !errors.Is(err, os.ErrNotExist):
		return err
	}
	if err := r.saveParentTimes(p); err != nil {
		return err
	}
	if err := os.Mkdir(r.path(p), mode); err != nil {
		return err
	}
	r.stubs = append(r.stubs, p)
	return nil
}

// saveParentTimes records the times of p's parent directory, unless
// already recorded.
func (r *rootfs) saveParentTimes(p string) error {
	parent := filepath.Dir(p)
	for _, s := range r.parents {
		if s.path == parent {
			return nil
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(r.path(parent), &st); err != nil {
		return err
	}
	r.parents = append(r.parents, savedTimes{parent, []unix.Timespec{st.Atim, st.Mtim}})
	return nil
}

func (r *rootfs) mountSys() error {
	const flags = unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	err := r.mount("sysfs", "/sys", "sysfs", flags, "")
	if err == nil || !errors.Is(err, unix.EPERM) {
		return err
	}
	// In a user namespace without its own network namespace sysfs cannot
	// be mounted; bind the host's read-only instead.
	if err := r.mount("/sys", "/sys", "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return remountReadOnly(r.path("/sys"))
}

// remountReadOnly makes the bind mount at p read-only, keeping the flags
// that a user namespace may not clear.
func remountReadOnly(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return err
	}
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for _, f := range [][2]uintptr{
		{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV},
		{unix.ST_NOEXEC, unix.MS_NOEXEC}, {unix.ST_NOATIME, unix.MS_NOATIME},
		{unix.ST_NODIRATIME, unix.MS_NODIRATIME}, {unix.ST_RELATIME, unix.MS_RELATIME},
	} {
		if uintptr(st.Flags)&f[0] != 0 {
			flags |= f[1]
		}
	}
	if err := unix.Mount("", p, "", flags, ""); err != nil {
		return fmt.Errorf("remounting %s read-only: %w", p, err)
	}
	return nil
}

// devices are bound from the host's /dev; binding works both as root and
// in a user namespace, where mknod does not.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty"}

func (r *rootfs) mountDev() error {
	if err := r.mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	if err := r.bindDevices("/dev"); err != nil {
		return err
	}
	for _, d := range []string{"/dev/pts", "/dev/shm"} {
		if err := os.Mkdir(r.path(d), 0o755); err != nil {
			return err
		}
	}
	err := r.mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5")
	if err != nil && errors.Is(err, unix.EINVAL) {
		// gid 5 (tty) is not mapped in a user namespace.
		err = r.mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620")
	}
	if err != nil {
		return err
	}
	if err := r.mount("shm", "/dev/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return err
	}
	for name, target := range map[string]string{
		"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, r.path("/dev/"+name)); err != nil {
			return err
		}
	}
	return nil
}

// bindDevices binds the host's devices into dir, a fresh tmpfs (so there
// are no symlinks of the root filesystem's to follow).
func (r *rootfs) bindDevices(dir string) error {
	for _, d := range devices {
		p := dir + "/" + d
		f, err := os.OpenFile(r.path(p), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		f.Close()
		if err := r.mount("/dev/"+d, p, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	return nil
}

const resolvConf = "/etc/resolv.conf"

// mountResolvConf binds src, the host's resolv.conf or Run's rewrite of
// it, read-only over the root's. If the root's is a symlink, as with
// systemd-resolved, the bind goes on its target, resolved inside the
// root; a missing file (or dangling target) is created as a stub.
func (r *rootfs) mountResolvConf(src string) error {
	if src == "" {
		src = resolvConf
	}
	if fi, err := os.Stat(src); err != nil || !fi.Mode().IsRegular() {
		return nil // the host has none to share
	}
	full, err := rootpath.Join(r.root, resolvConf, rootpath.InRoot)
	if err != nil {
		return fmt.Errorf("resolving %s in the root filesystem: %w", resolvConf, err)
	}
	rel, err := filepath.Rel(r.root, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("resolving %s in the root filesystem: %s is outside it", resolvConf, full)
	}
	p := "/" + rel
	fi, err := os.Lstat(full)
	switch {
	case err == nil && fi.Mode().IsRegular():
	case err == nil:
		return nil // a directory or device: leave it alone
	case errors.Is(err, os.ErrNotExist):
		if err := r.stubFile(p); err != nil {
			return fmt.Errorf("creating %s: %w", p, err)
		}
	default:
		return err
	}
	if err := r.mount(src, p, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	return remountReadOnly(full)
}

// stubFile creates the empty file p and any missing parent directories.
// SecureJoin resolved every symlink on the way, so each missing component
// is created as a plain directory inside the root.
func (r *rootfs) stubFile(p string) error {
	var missing []string
	for d := filepath.Dir(p); d != "/"; d = filepath.Dir(d) {
		if _, err := os.Lstat(r.path(d)); err == nil {
			break
		}
		missing = append(missing, d)
	}
	first := p
	if len(missing) > 0 {
		first = missing[len(missing)-1]
	}
	if err := r.saveParentTimes(first); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(r.path(missing[i]), 0o755); err != nil {
			return err
		}
		r.stubs = append(r.stubs, missing[i])
	}
	f, err := os.OpenFile(r.path(p), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	r.stubs = append(r.stubs, p)
	return f.Close()
}

// pivot makes the mounted root the process's root and detaches the host's
// file systems from this mount namespace. Where pivot_root is impossible
// (a host running from an initramfs) it falls back to chroot.
func (r *rootfs) pivot() error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(oldroot)
	if err := unix.Chdir(r.root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		if err := unix.Chroot("."); err != nil {
			return fmt.Errorf("changing root to %s: %w", r.root, err)
		}
	} else {
		// The old root is now stacked on top of the new one; detach it.
		if err := unix.Fchdir(oldroot); err != nil {
			return err
		}
		if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
			return fmt.Errorf("detaching the host's root: %w", err)
		}
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	r.root = ""
	return nil
}

// cleanup unmounts what setup mounted inside the root and removes the
// stubs it created, restoring their parent directory's times.
func (r *rootfs) cleanup() {
	for i := len(r.mounts) - 1; i >= 0; i-- {
		_ = unix.Unmount(r.path(r.mounts[i]), unix.MNT_DETACH)
	}
	removed := true
	for i := len(r.stubs) - 1; i >= 0; i-- {
		if err := os.Remove(r.path(r.stubs[i])); err != nil {
			removed = false
		}
	}
	if !removed {
		return // something was put into a stub directory
	}
	for i := len(r.parents) - 1; i >= 0; i-- {
		s := r.parents[i]
		_ = unix.UtimesNanoAt(unix.AT_FDCWD, r.path(s.path), s.times, unix.AT_SYMLINK_NOFOLLOW)
	}
}

// runCommand runs the command on a thread of its own, confined (see
// confineThread), and waits for it. The thread stays locked, so it ends
// with the goroutine and its confinement never reaches other work; it
// lives as long as the command, whose parent death signal is tied to it.
func runCommand(cfg initConfig) (initStatus, error) {
	type result struct {
		st  initStatus
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		if err := confineThread(); err != nil {
			done <- result{err: err}
			return
		}
		st, err := startAndReap(cfg)
		done <- result{st, err}
	}()
	r := <-done
	return r.st, r.err
}

// startAndReap starts the command inside the root, reaps every process
// that ends up as the init's child, and once the command exits kills
// whatever it left behind.
func startAndReap(cfg initConfig) (initStatus, error) {
	if len(cfg.Args) == 0 {
		return initStatus{}, errors.New("no command to run")
	}
	path, err := lookPath(cfg.Args[0], cfg.Env)
	if err != nil {
		return initStatus{}, err
	}
	unix.Umask(0o022)
	pid, err := syscall.ForkExec(path, cfg.Args, &syscall.ProcAttr{
		Dir:   "/",
		Env:   cfg.Env,
		Files: []uintptr{0, 1, 2},
		Sys:   &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	if err != nil {
		return initStatus{}, fmt.Errorf("starting %s: %w", cfg.Args[0], err)
	}
	var st initStatus
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return initStatus{}, fmt.Errorf("waiting for %s: %w", cfg.Args[0], err)
		}
		if wpid != pid {
			continue // an orphan reparented to the init
		}
		if ws.Signaled() {
			st.Code, st.Signal = -1, int(ws.Signal())
		} else {
			st.Code = ws.ExitStatus()
		}
		break
	}
	// kill(-1) from a PID namespace's init reaches every other process in
	// the namespace (initMain made sure this is one).
	if os.Getpid() == 1 {
		_ = syscall.Kill(-1, syscall.SIGKILL)
	}
	for {
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			break
		}
	}
	return st, nil
}

// lookPath finds file in the PATH of env, inside the current root.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	pathEnv := StandardPath
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found in the root filesystem (PATH=%s)", file, pathEnv)
}
