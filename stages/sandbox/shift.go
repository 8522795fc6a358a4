package sandbox

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Id shifting: when fgimg runs as root, a command's user namespace maps
// the image's ids 0..size-1 to an unprivileged host range, so that root
// in the image is an ordinary user on the host. The files in the layers
// keep the image's own ids: the command's root filesystem is mounted over
// idmapped mounts of its layers (mount_setattr MOUNT_ATTR_IDMAP), which
// translate the host range back to the image's ids on disk.

// DefaultShiftBase and DefaultShiftSize are the host range the image's ids
// map to when /etc/subuid (or /etc/subgid) has no range for root: above
// the ranges systemd-nspawn picks from (524288-1879048191), below 2^31.
const (
	DefaultShiftBase = 0x70000000 // 1879048192
	DefaultShiftSize = 65536
)

// idRange maps the ids 0..size-1 to host..host+size-1.
type idRange struct{ host, size uint32 }

func (r idRange) procMap() []syscall.SysProcIDMap {
	return []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(r.host), Size: int(r.size)}}
}

// subordinateRange returns the first range of at least DefaultShiftSize
// ids that the subordinate-id file (/etc/subuid format, "name:start:count")
// gives root, by name or as uid 0, or false.
func subordinateRange(file string) (idRange, bool) {
	f, err := os.Open(file)
	if err != nil {
		return idRange{}, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(strings.TrimSpace(sc.Text()), ":")
		if len(fields) != 3 || (fields[0] != "root" && fields[0] != "0") {
			continue
		}
		start, err1 := strconv.ParseUint(fields[1], 10, 32)
		count, err2 := strconv.ParseUint(fields[2], 10, 32)
		if err1 != nil || err2 != nil || start == 0 || count < DefaultShiftSize || start+DefaultShiftSize > 1<<32-1 {
			continue
		}
		return idRange{host: uint32(start), size: DefaultShiftSize}, true
	}
	return idRange{}, false
}

// shiftRanges returns the host ranges of the image's uids and gids.
func shiftRanges() (uids, gids idRange) {
	def := idRange{host: DefaultShiftBase, size: DefaultShiftSize}
	uids, gids = def, def
	if r, ok := subordinateRange("/etc/subuid"); ok {
		uids = r
	}
	if r, ok := subordinateRange("/etc/subgid"); ok {
		gids = r
	}
	return uids, gids
}

// shifting reports whether commands run with shifted ids: as root of the
// initial user namespace. Without root the ids are fgimg's own user's
// already, and idmapped mounts are out of reach.
func shifting() bool { return os.Geteuid() == 0 && !inUserNS() }

// usernsArg0 marks a re-executed binary that only holds a user namespace
// open until its stdin closes (see Init).
const usernsArg0 = "fgimg-sandbox-userns"

var idmap struct {
	once       sync.Once
	fd         int
	uids, gids idRange
	err        error
}

// idmapNamespace returns a user namespace with the shifted maps, for
// idmapped mounts: made once per process by a short-lived child, and
// kept open.
func idmapNamespace() (fd int, uids, gids idRange, err error) {
	idmap.once.Do(func() {
		idmap.uids, idmap.gids = shiftRanges()
		cmd := exec.Command("/proc/self/exe")
		cmd.Args = []string{usernsArg0}
		cmd.Env = []string{}
		stdin, err := cmd.StdinPipe()
		if err != nil {
			idmap.err = err
			return
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: idmap.uids.procMap(),
			GidMappings: idmap.gids.procMap(),
			Pdeathsig:   syscall.SIGKILL,
		}
		if err := cmd.Start(); err != nil {
			idmap.err = fmt.Errorf("creating the user namespace for idmapped mounts: %w", err)
			return
		}
		idmap.fd, idmap.err = unix.Open(fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		stdin.Close()
		_ = cmd.Wait()
	})
	return idmap.fd, idmap.uids, idmap.gids, idmap.err
}

// holdUserNS is the body of a usernsArg0 process.
func holdUserNS() {
	_, _ = os.Stdin.Read(make([]byte, 1))
	os.Exit(0)
}

// layers is a root filesystem to build: an overlay of lower (topmost
// first) with upper and work, or, without lower, upper alone. Relative
// paths are relative to dir.
type layers struct {
	lower            []string
	dir, upper, work string
}

func (l layers) abs(p string) (string, error) {
	if l.dir != "" && !filepath.IsAbs(p) {
		p = filepath.Join(l.dir, p)
	}
	return filepath.Abs(p)
}

// idmapped returns a detached idmapped mount of the directory p.
func idmapped(p string, userns int) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, p, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("cloning the mount of %s: %w", p, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns)}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		var st unix.Statfs_t
		_ = unix.Statfs(p, &st)
		return -1, fmt.Errorf("idmapping %s (file system type %#x) for the sandbox's shifted ids: %w; "+
			"running as root, fgimg needs a cache on a file system with idmapped mounts (ext4, xfs, btrfs, tmpfs)", p, st.Type, err)
	}
	return fd, nil
}

// mountShifted mounts l at target in the calling thread's mount namespace
// over idmapped mounts of its directories, so that the image's ids appear
// shifted to uids/gids at target while the layers keep them unshifted.
func mountShifted(l layers, target string, userns int, uids, gids idRange) error {
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	clone := func(p string) (string, error) {
		fd, err := idmapped(p, userns)
		if err != nil {
			return "", err
		}
		fds = append(fds, fd)
		return "/proc/self/fd/" + strconv.Itoa(fd), nil
	}
	upper, err := l.abs(l.upper)
	if err != nil {
		return err
	}
	if len(l.lower) == 0 {
		src, err := clone(upper)
		if err != nil {
			return err
		}
		fd := fds[len(fds)-1]
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("attaching %s (%s) at %s: %w", upper, src, target, err)
		}
		return nil
	}
	var lower []string
	for _, d := range l.lower {
		p, err := l.abs(d)
		if err != nil {
			return err
		}
		c, err := clone(p)
		if err != nil {
			return err
		}
		lower = append(lower, c)
	}
	// Overlayfs wants upper and work on one mount: clone their common
	// parent.
	work, err := l.abs(l.work)
	if err != nil {
		return err
	}
	parent := filepath.Dir(upper)
	for !within(work, parent) {
		parent = filepath.Dir(parent)
	}
	c, err := clone(parent)
	if err != nil {
		return err
	}
	relUpper, _ := filepath.Rel(parent, upper)
	relWork, _ := filepath.Rel(parent, work)
	opts, err := overlayOptions(lower, c+"/"+relUpper, c+"/"+relWork, false)
	if err != nil {
		return err
	}
	// Overlayfs creates whiteouts and its work files with the mounter's
	// credentials: they must be ids the idmapped upper can store, so
	// mount as the shifted root (keeping the capabilities).
	if err := asShiftedRoot(uids, gids, func() error {
		return unix.Mount("overlay", target, "overlay", 0, opts)
	}); err != nil {
		return fmt.Errorf("mounting the shifted overlay (%s): %w", opts, err)
	}
	return nil
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

// asShiftedRoot runs f on the calling (locked) thread with the file system
// ids of the shifted root and its capabilities intact, then restores them.
func asShiftedRoot(uids, gids idRange, f func() error) error {
	unix.Setfsgid(int(gids.host))
	unix.Setfsuid(int(uids.host))
	defer func() {
		unix.Setfsuid(0)
		unix.Setfsgid(0)
	}()
	// Leaving fsuid 0 cleared the file capabilities from the effective
	// set; they are still permitted.
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[0].Effective, data[1].Effective = data[0].Permitted, data[1].Permitted
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return err
	}
	return f()
}

// shiftedRootPrefix names the directory a command's shifted root
// filesystem is mounted on after the upper directory (absolute), so that
// the mount can be told from others.
func shiftedRootPrefix(upper string) string {
	h := sha256.Sum256([]byte(upper))
	return "fgimg-root-" + hex.EncodeToString(h[:6]) + "-"
}

// removeStaleRootDirs removes the mount points of shifted roots that
// fgimg processes killed before removing them left in the temporary
// directory: named shiftedRootPrefix, pid, "-", random. A dead process's
// mounts are gone with it, so its directories are empty.
func removeStaleRootDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "fgimg-root-*"))
	for _, d := range dirs {
		f := strings.Split(filepath.Base(d), "-")
		if len(f) != 5 {
			continue
		}
		pid, err := strconv.Atoi(f[3])
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.Remove(d) // fails unless empty
		}
	}
}

// Overlays mounted by MountOverlay, by target, so that Run can give a
// command the same root filesystem with shifted ids.
var overlays struct {
	sync.Mutex
	m map[string]layers
}

func registerOverlay(target string, l layers) {
	overlays.Lock()
	defer overlays.Unlock()
	if overlays.m == nil {
		overlays.m = map[string]layers{}
	}
	overlays.m[target] = l
}

func unregisterOverlay(target string) {
	overlays.Lock()
	defer overlays.Unlock()
	delete(overlays.m, target)
}

func registeredOverlay(target string) (layers, bool) {
	overlays.Lock()
	defer overlays.Unlock()
	l, ok := overlays.m[target]
	return l, ok
}

// errBusy explains a root filesystem Run could not unmount.
var errBusy = errors.New("the root filesystem is in use (an open file or working directory in it) and cannot be remounted with the sandbox's shifted ids")
