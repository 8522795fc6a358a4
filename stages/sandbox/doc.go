// Package sandbox runs build commands inside a stage's root filesystem
// and mounts that filesystem for stages written in Go.
//
// A stage's root filesystem is an overlay: read-only lower directories
// (unpacked cached layers, topmost first) and a fresh upper directory that
// captures the stage's changes.
//
// # Running commands
//
// [Run] re-executes the current binary (/proc/self/exe) as a small init
// process in new user, mount, PID, UTS, IPC and network namespaces. As
// root, the user namespace maps the image's ids 0-65535 to an
// unprivileged host range (shift.go: /etc/subuid's range for root, else
// DefaultShiftBase), and the root filesystem is mounted, in a mount
// namespace of the starting thread's own, over idmapped mounts of its
// layers, so that files keep the image's ids on disk; an overlay that
// MountOverlay mounted at Spec.Upper is unmounted for the command and
// mounted again afterwards, since two overlays must not share an upper
// directory (nothing may hold a descriptor in it meanwhile). Without root
// the namespace maps fgimg's single id to itself. The capabilities of root
// inside hold only over the new namespaces. The init makes every mount private,
// mounts the overlay on top of the upper directory (so the overlay
// exists only in its own mount namespace), mounts /proc, a read-only
// /sys, a /dev tmpfs (null, zero, full, random, urandom and tty bound
// from the host, a new devpts instance for /dev/pts and /dev/ptmx, a
// /dev/shm tmpfs) and the host's /etc/resolv.conf (read-only), masks and
// write-protects the kernel files the container runtimes do (/proc/sys,
// /proc/kcore, /sys/firmware, ...), brings up lo, pivots into the root,
// and runs the command, reaping orphans as PID 1, with a minimal
// environment: PATH, HOME=/root, LANG=C.UTF-8 and whatever [Spec.Env]
// adds. The hostname is "fgimg". Commands run as root of the user
// namespace, in /, with umask 022 and no controlling terminal.
//
// # Confinement
//
// The command starts from a thread of the init that has given up what
// the command must not have: its capabilities are [KeptCapabilities]
// (Docker's default set without CAP_MKNOD) in the bounding, permitted,
// effective and inheritable sets, no ambient ones; no_new_privs is set;
// and a seccomp filter (see seccomp.go) denies mounting, namespaces,
// modules, kexec, reboot, swap, the clock, keyrings, bpf, perf, ptrace and
// the like. The init's other threads keep their capabilities to clean up.
//
// The network namespace has only lo unless [Spec.Network] asks for
// outbound access: then pasta (Debian's passt) connects it to the outside
// through a user-mode stack, with no port forwarded either way and the
// gateway not mapped to the host's loopback; with shifted ids pasta runs
// in the command's user namespace, as its root. A pids cgroup bounds the
// command's processes ([Spec.MaxProcesses]); reaching the bound stops the
// command with a [*ProcessLimitError]. A memory cgroup bounds its memory
// and swap ([Spec.MaxMemory]); a command failing after an OOM kill yields
// a [*MemoryLimitError]. docs/SECURITY.md describes the
// model for users.
//
// Nothing outlives Run: when the command ends the init kills whatever it
// left running and exits, which drops the namespaces and with them every
// mount. A cancelled context kills the init with SIGKILL. If fgimg itself is
// killed, even with SIGKILL, the kernel sends SIGKILL to the init (parent
// death signal), and the death of a PID namespace's init kills all
// processes in it.
//
// Mount points the root filesystem lacks (/proc, /sys, /dev and the
// /etc/resolv.conf file, or the target of a dangling resolv.conf symlink,
// resolved inside the root) are created before the command and removed
// afterwards, restoring the parent directory's times, so they do not show
// up as changes. Such a parent directory may still have been copied up into
// the upper directory with unchanged metadata; layer differs should compare
// metadata rather than treat every upper directory as changed. If the init
// is killed mid-command these stubs stay in the upper directory; the stage
// failed anyway.
//
// # Host tools
//
// A command with [Spec.Target] is a host tool working on the root
// filesystem rather than a command inside it (debootstrap's first stage,
// mmdebstrap): the init mounts the root filesystem as usual, then moves it
// to Target inside a fresh tmpfs that becomes the command's root, holding
// the host's /usr and /etc (and /bin, /sbin, /lib* as links or
// directories, as the host has them) read-only, [Spec.HostPaths]
// read-only, and empty /tmp, /var/tmp, /root and /run. Everything else
// (namespaces, shifted ids, confinement, limits, network) is as for any
// command; see hostroot.go.
//
// # Binaries must call Init first
//
// Every binary that uses Run, including test binaries (from TestMain), must
// call [Init] first thing in main: in the re-executed init process it does
// the init's job and exits; otherwise it returns at once.
//
// # Isolation and which functions need it
//
// [Isolate] re-executes the whole program once in a private mount namespace
// (and, when not run as root, a user namespace mapping the caller to root),
// forwards SIGINT and SIGTERM to it and exits with its exit code. Call it
// from main, after [Init], before doing any work, in commands that build.
//
//   - [Run] needs root or [Isolate]: as root it works without isolation,
//     since each command gets its own namespaces anyway; without root it
//     needs the user namespace set up by Isolate, inside which each
//     command gets a nested one.
//   - [MountOverlay] always needs [Isolate]: the overlay is mounted in the
//     calling process's mount namespace, and only a private namespace
//     guarantees that the mount disappears when fgimg dies.
//
// Tests of code that calls MountOverlay call Init and then Isolate in
// TestMain; Isolate re-executes the test binary with the same flags.
//
// # Unprivileged use
//
// Without root, Isolate maps only the caller's uid and gid (to 0), so
// commands that chown files to other users fail, and overlays are mounted
// with the userxattr option: opaque directories and redirects are then
// recorded in user.overlay.* rather than trusted.overlay.* extended
// attributes of the upper directory. The overlay Run mounts for
// [Spec.Lower] is always mounted in the command's user namespace, and so
// always with userxattr. Without root no cgroup can be created, and
// RLIMIT_NPROC and RLIMIT_DATA bound the processes and memory instead.
package sandbox
