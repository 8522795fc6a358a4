package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Hostname is the host name commands see.
const Hostname = "fgimg"

// StandardPath is the PATH commands run with unless Spec.Env sets another.
const StandardPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Spec describes one command to run inside a root filesystem.
type Spec struct {
	// Lower lists the overlay's read-only lower directories, topmost
	// first. Relative paths are relative to Dir. When Lower is empty,
	// Upper is itself the root filesystem (bind-mounted) and Work is
	// unused.
	Lower []string
	// Dir, if set, is the directory the init changes to before mounting,
	// so that relative Lower, Upper and Work paths keep the overlay's
	// option string short. A relative Dir is relative to the current
	// directory.
	Dir string
	// Upper and Work are the overlay's upper and work directories, on the
	// same file system. Relative paths are relative to Dir.
	Upper, Work string
	// Args is the command and its arguments, for example
	// {"/bin/sh", "-c", "apt-get install -y x"}. A command name without
	// a slash is looked up in PATH inside the root filesystem.
	Args []string
	// Env holds extra KEY=value entries on top of the standard
	// environment (PATH, HOME=/root, LANG=C.UTF-8); an entry with the
	// same key replaces the standard one. Nothing else of fgimg's own
	// environment reaches the command.
	Env []string
	// Stdin, Stdout and Stderr connect the command; nil means /dev/null.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// Network gives the command outbound network access through pasta.
	// Without it the command has only a loopback interface of its own.
	// The host's loopback services are out of reach either way.
	Network bool
	// MaxProcesses bounds the command's processes and threads; zero
	// means DefaultMaxProcesses. Reaching the bound stops the command
	// with a *ProcessLimitError.
	MaxProcesses int
	// MaxMemory bounds the command's memory and swap, in bytes; zero
	// means DefaultMaxMemory(). A command that fails after the OOM
	// killer ended one of its processes at the bound yields a
	// *MemoryLimitError.
	MaxMemory int64
	// MaxCPUs bounds the command's CPU time to that many CPUs' worth
	// (1.5: one and a half), a quota per 100 ms; zero means no bound
	// beyond the host's CPUs. Without a cpu cgroup (without root) the
	// command is not bounded.
	MaxCPUs float64
	// Target, when set, runs a host tool on the root filesystem instead
	// of a command inside it (a bootstrap tool filling an empty root):
	// the command's root is then a fresh tmpfs holding the host's /usr and
	// /etc (and /bin, /sbin and /lib* as the host has them, links or
	// directories) read-only, HostPaths, an empty /tmp, /proc, /sys and
	// /dev as usual; the root filesystem that Lower and Upper describe is
	// mounted read-write at the absolute path Target. Args[0] is looked up
	// in that root.
	Target string
	// HostPaths are further host files or directories, absolute, bound
	// read-only at their own path in a Target command's root: the tool
	// itself when it lies outside the host directories above (paths
	// inside them are there already).
	HostPaths []string
	// TargetDevices mounts, for a Target command, a tmpfs at Target's
	// /dev (made when missing, and then kept, empty) holding only the
	// device nodes a root filesystem's own /dev gets: for a tool that
	// runs programs chrooted into Target but may not mount (mmdebstrap).
	TargetDevices bool
}

// ExitError reports a command that ran but did not succeed.
type ExitError struct {
	// Code is the exit status, or -1 if a signal killed the command.
	Code int
	// Signal is the signal that killed the command, or 0.
	Signal syscall.Signal
}

func (e *ExitError) Error() string {
	if e.Signal != 0 {
		return "signal: " + e.Signal.String()
	}
	return "exit status " + strconv.Itoa(e.Code)
}

// Environment returns the environment a command gets: the standard
// entries, then extra; a later entry replaces an earlier one with the same
// key, keeping the earlier one's position.
func Environment(extra []string) []string {
	env := []string{"PATH=" + StandardPath, "HOME=/root", "LANG=C.UTF-8"}
	index := map[string]int{}
	for i, kv := range env {
		index[envKey(kv)] = i
	}
	for _, kv := range extra {
		k := envKey(kv)
		if i, ok := index[k]; ok {
			env[i] = kv
			continue
		}
		index[k] = len(env)
		env = append(env, kv)
	}
	return env
}

func envKey(kv string) string {
	k, _, _ := strings.Cut(kv, "=")
	return k
}

// initConfig is what Run sends the init process over its config pipe.
type initConfig struct {
	Lower       []string
	Upper, Work string
	Args        []string
	Env         []string
	// ResolvConf is the file bound over the root's /etc/resolv.conf;
	// empty: the host's.
	ResolvConf string
	// Target and HostPaths are Spec's.
	Target        string   `json:",omitempty"`
	HostPaths     []string `json:",omitempty"`
	TargetDevices bool     `json:",omitempty"`
}

// initStatus is what the init reports back over its status pipe.
type initStatus struct {
	Error  string `json:",omitempty"` // setup failed
	Code   int    // exit status of the command
	Signal int    `json:",omitempty"` // signal that killed the command
}

// Run runs s.Args inside the root filesystem described by s and waits for
// it, confined as the package documentation describes. It needs root, or
// a user namespace set up by Isolate.
//
// A command that exits with a non-zero status or is killed yields an
// *ExitError. When ctx is done, Run kills the command and everything it
// started and returns an error wrapping ctx.Err(). Either way, when Run
// returns no process of the command and no mount of the root filesystem is
// left.
func Run(ctx context.Context, s Spec) error {
	if len(s.Args) == 0 {
		return errors.New("sandbox: no command to run")
	}
	if s.Upper == "" {
		return errors.New("sandbox: no upper directory")
	}
	if len(s.Lower) > 0 && s.Work == "" {
		return errors.New("sandbox: an overlay needs a work directory")
	}
	if len(s.Lower) > 0 {
		if _, err := overlayOptions(s.Lower, s.Upper, s.Work, false); err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := checkHostTool(s); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if os.Geteuid() != 0 {
		if err := userNSStatus(procSys); err != nil {
			return fmt.Errorf("sandbox: running commands in a root filesystem needs root: %w", err)
		}
		return errors.New("sandbox: running commands in a root filesystem needs root, or sandbox.Isolate to run first")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}

	if !shifting() {
		uids, gids, setgroups, err := identityMaps()
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		return startInit(ctx, s, idMaps{uids: uids, gids: gids, setgroups: setgroups})
	}
	return runShifted(ctx, s)
}

// idMaps are the id maps of a command's user namespace; credential, if
// set, is what the init becomes in it.
type idMaps struct {
	uids, gids []syscall.SysProcIDMap
	setgroups  bool
	credential *syscall.Credential
}

// runShifted runs s with the image's ids shifted to an unprivileged host
// range (see shift.go). The root filesystem is mounted anew over idmapped
// layers, in a mount namespace of a thread of its own that the init
// inherits; a root filesystem MountOverlay mounted is unmounted for the
// command (two overlays must not share an upper directory) and mounted
// again afterwards.
func runShifted(ctx context.Context, s Spec) (err error) {
	userns, uids, gids, err := idmapNamespace()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	l := layers{lower: s.Lower, dir: s.Dir, upper: s.Upper, work: s.Work}
	if len(s.Lower) == 0 {
		target, err := l.abs(s.Upper)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		if m, ok := registeredOverlay(target); ok {
			if err := unix.Unmount(target, 0); err != nil {
				if errors.Is(err, unix.EBUSY) {
					return fmt.Errorf("sandbox: %s: %w", target, errBusy)
				}
				return fmt.Errorf("sandbox: unmounting %s: %w", target, err)
			}
			defer func() {
				if merr := mountLayers(m, target); merr != nil && err == nil {
					err = merr
				}
			}()
			l = m
		}
	}
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, whose mount namespace is its own,
		// ends with the goroutine.
		runtime.LockOSThread()
		done <- runInOwnMountNS(ctx, s, l, userns, uids, gids)
	}()
	return <-done
}

// runInOwnMountNS moves the calling locked thread into a private mount
// namespace, mounts l there with shifted ids on a fresh directory and runs
// s's command on it.
func runInOwnMountNS(ctx context.Context, s Spec, l layers, userns int, uids, gids idRange) error {
	// The mount point is made before unsharing, so that it is a plain
	// directory on the host that the shifted root can reach.
	upper, err := l.abs(l.upper)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	removeStaleRootDirs()
	root, err := os.MkdirTemp("", shiftedRootPrefix(upper)+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer os.Remove(root)
	if err := os.Chmod(root, 0o755); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := unix.Unshare(unix.CLONE_FS | unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("sandbox: unsharing the mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("sandbox: making mounts private: %w", err)
	}
	if err := mountShifted(l, root, userns, uids, gids); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	// Unmounted before Run mounts the layers again (the overlay must be
	// gone by then), after startInit has stopped everything using it.
	defer func() {
		if err := unix.Unmount(root, 0); err != nil {
			_ = unix.Unmount(root, unix.MNT_DETACH)
		}
	}()
	s.Lower, s.Dir, s.Upper, s.Work = nil, "", root, ""
	return startInit(ctx, s, idMaps{
		uids: uids.procMap(), gids: gids.procMap(), setgroups: true,
		credential: &syscall.Credential{Uid: 0, Gid: 0},
	})
}

// startInit starts the init for s in new namespaces with the given id
// maps and waits for it.
func startInit(ctx context.Context, s Spec, maps idMaps) error {
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer cfgW.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return fmt.Errorf("sandbox: %w", err)
	}
	defer statR.Close()

	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{initArg0}
	cmd.Env = []string{}
	cmd.Dir = s.Dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdin, s.Stdout, s.Stderr
	cmd.ExtraFiles = []*os.File{cfgR, statW} // fds 3 and 4 in the init
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC | syscall.CLONE_NEWNET,
		UidMappings:                maps.uids,
		GidMappings:                maps.gids,
		GidMappingsEnableSetgroups: maps.setgroups,
		Credential:                 maps.credential,
		Setsid:                     true, // no controlling terminal for build commands
		Pdeathsig:                  syscall.SIGKILL,
	}
	cmd.WaitDelay = 10 * time.Second
	limit := s.MaxProcesses
	if limit <= 0 {
		limit = DefaultMaxProcesses
	}
	// Without a cgroup (no root) RLIMIT_NPROC bounds the command's
	// processes instead, without the clear error.
	cg, cgErr := newPidsCgroup(limit)
	if cg != nil {
		defer cg.remove()
	}
	memLimit := s.MaxMemory
	if memLimit <= 0 {
		memLimit = DefaultMaxMemory()
	}
	var mem *memCgroup
	if memLimit > 0 {
		mem, _ = newMemCgroup(memLimit, cg)
		if mem != nil {
			defer mem.remove()
		}
	}
	var cpu *cpuCgroup
	if s.MaxCPUs > 0 {
		cpu, _ = newCPUCgroup(s.MaxCPUs, cg)
		if cpu != nil {
			defer cpu.remove()
		}
	}

	// The parent death signal fires when the thread that started the
	// child exits; keep this goroutine, and so no other, on the thread
	// until the child is gone.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	err = cmd.Start()
	cfgR.Close()
	statW.Close()
	if err != nil {
		return fmt.Errorf("sandbox: starting init: %w", err)
	}
	// The init waits for its configuration: it is placed in the cgroup
	// and given the network before it starts anything.
	abort := func(err error) error {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("sandbox: %w", err)
	}
	if cg != nil {
		if err := cg.add(cmd.Process.Pid); err != nil {
			return abort(fmt.Errorf("limiting processes: %w", err))
		}
	} else {
		lim := unix.Rlimit{Cur: uint64(limit), Max: uint64(limit)}
		if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NPROC, &lim, nil); err != nil {
			return abort(fmt.Errorf("limiting processes (no cgroup: %v): %w", cgErr, err))
		}
	}
	if mem != nil {
		if err := mem.add(cmd.Process.Pid); err != nil {
			return abort(fmt.Errorf("limiting memory: %w", err))
		}
	} else if memLimit > 0 {
		if err := limitMemoryWithoutCgroup(cmd.Process.Pid, memLimit); err != nil {
			return abort(err)
		}
	}
	if cpu != nil {
		if err := cpu.add(cmd.Process.Pid); err != nil {
			return abort(fmt.Errorf("limiting CPU time: %w", err))
		}
	}
	var resolv string
	if s.Network {
		var dnsForward bool
		resolv, dnsForward, err = loopbackResolverRewrite(resolvConf)
		if err != nil {
			return abort(err)
		}
		if resolv != "" {
			defer os.Remove(resolv)
		}
		var shifted *idMaps
		if maps.credential != nil {
			shifted = &maps
		}
		stop, err := startNetwork(cmd.Process.Pid, dnsForward, shifted)
		if err != nil {
			return abort(err)
		}
		defer stop()
	}
	overLimit := func() bool { return false }
	if cg != nil {
		overLimit = cg.stopAtLimit(cmd.Process)
	}
	statusc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(statR)
		statusc <- b
	}()
	// If the init dies before reading, the write fails; Wait tells why.
	_ = json.NewEncoder(cfgW).Encode(initConfig{
		Lower: s.Lower, Upper: s.Upper, Work: s.Work,
		Args: s.Args, Env: Environment(s.Env), ResolvConf: resolv,
		Target: s.Target, HostPaths: s.HostPaths, TargetDevices: s.TargetDevices,
	})
	cfgW.Close()

	waitErr := cmd.Wait()
	raw := <-statusc
	if overLimit() {
		return &ProcessLimitError{Limit: limit}
	}
	var st initStatus
	ok := len(raw) > 0 && json.Unmarshal(raw, &st) == nil
	if mem != nil && (!ok || st.Error != "" || st.Signal != 0 || st.Code != 0) && mem.oomKilled() {
		return &MemoryLimitError{Limit: memLimit}
	}
	if !ok {
		// No report: the init was killed, by Run on cancellation or
		// by someone else.
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sandbox: command interrupted: %w", err)
		}
		if waitErr == nil {
			waitErr = errors.New("no status reported")
		}
		return fmt.Errorf("sandbox: init process failed: %w", waitErr)
	}
	switch {
	case st.Error != "":
		return fmt.Errorf("sandbox: %s", st.Error)
	case st.Signal != 0:
		return &ExitError{Code: -1, Signal: syscall.Signal(st.Signal)}
	case st.Code != 0:
		return &ExitError{Code: st.Code}
	}
	return nil
}

// identityMaps maps every user and group id of the current user namespace
// to itself in the command's: files keep their owners in the layers, and
// root in the image holds capabilities only inside its own namespace.
// setgroups is allowed unless the current namespace forbids it.
func identityMaps() (uids, gids []syscall.SysProcIDMap, setgroups bool, err error) {
	read := func(name string) ([]syscall.SysProcIDMap, error) {
		b, err := os.ReadFile("/proc/self/" + name)
		if err != nil {
			return nil, err
		}
		var m []syscall.SysProcIDMap
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(l)
			if len(f) != 3 {
				continue
			}
			inside, err1 := strconv.ParseUint(f[0], 10, 32)
			count, err2 := strconv.ParseUint(f[2], 10, 32)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("reading /proc/self/%s: %q", name, l)
			}
			m = append(m, syscall.SysProcIDMap{ContainerID: int(inside), HostID: int(inside), Size: int(count)})
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("/proc/self/%s is empty", name)
		}
		return m, nil
	}
	if uids, err = read("uid_map"); err != nil {
		return nil, nil, false, err
	}
	if gids, err = read("gid_map"); err != nil {
		return nil, nil, false, err
	}
	b, err := os.ReadFile("/proc/self/setgroups")
	setgroups = err != nil || strings.TrimSpace(string(b)) != "deny"
	return uids, gids, setgroups, nil
}
