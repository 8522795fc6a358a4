package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fgimg/fgimg/internal/mountinfo"
)

// DefaultMaxProcesses bounds the processes (and threads) of one command
// when Spec.MaxProcesses is zero: plenty for parallel compilers and
// package managers, few enough to stop a fork bomb.
const DefaultMaxProcesses = 4096

// ProcessLimitError reports a command stopped because it reached its
// process limit.
type ProcessLimitError struct{ Limit int }

func (e *ProcessLimitError) Error() string {
	return fmt.Sprintf("stopped: the command reached the limit of %d processes (a fork bomb, or a build more parallel than that: run fewer jobs at once, make -jN)", e.Limit)
}

// pidsCgroup is a pids-controller cgroup holding one command.
type pidsCgroup struct {
	dir   string
	limit int
}

var cgroupSeq atomic.Uint64

// newPidsCgroup creates a cgroup below fgimg's own in the pids hierarchy
// (cgroup v2, or v1's pids controller) with pids.max set to limit. It
// fails where fgimg may not create cgroups (without root, say).
func newPidsCgroup(limit int) (*pidsCgroup, error) {
	parent, err := ownPidsCgroup()
	if err != nil {
		return nil, err
	}
	dir, err := newCgroupDir(parent)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "pids.max"), []byte(strconv.Itoa(limit)), 0); err != nil {
		os.Remove(dir)
		return nil, err
	}
	return &pidsCgroup{dir: dir, limit: limit}, nil
}

// newCgroupDir creates a cgroup for one command below parent, after
// removing the ones dead fgimg processes left there.
func newCgroupDir(parent string) (string, error) {
	removeStaleCgroups(parent)
	dir := filepath.Join(parent, fmt.Sprintf("fgimg-%d-%d", os.Getpid(), cgroupSeq.Add(1)))
	return dir, os.Mkdir(dir, 0o755)
}

// removeStaleCgroups removes the empty cgroups of fgimg processes that
// died without removing them (killed with SIGKILL, say).
func removeStaleCgroups(parent string) {
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), "fgimg-")
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if syscall.Kill(pid, 0) == syscall.ESRCH {
			_ = os.Remove(filepath.Join(parent, e.Name())) // fails unless empty
		}
	}
}

// add moves the process pid (and so its future children) into the cgroup.
func (c *pidsCgroup) add(pid int) error { return addToCgroup(c.dir, pid) }

// addToCgroup moves the process pid into the cgroup dir.
func addToCgroup(dir string, pid int) error {
	return os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0)
}

// hitLimit reports whether a fork failed for the limit.
func (c *pidsCgroup) hitLimit() bool {
	return cgroupCount(filepath.Join(c.dir, "pids.events"), "max") > 0
}

// cgroupCount reads the value of key in a flat-keyed cgroup file
// ("key N" lines), or 0.
func cgroupCount(file, key string) int {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+" "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

// stopAtLimit kills p once a fork in the cgroup has failed for the limit:
// a fork bomb never ends by itself. The returned function, called once p
// is gone, stops watching and reports whether the limit stopped p.
func (c *pidsCgroup) stopAtLimit(p *os.Process) (stopped func() bool) {
	done := make(chan struct{})
	hit := make(chan bool, 1)
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				hit <- false
				return
			case <-t.C:
				if c.hitLimit() {
					_ = p.Kill()
					hit <- true
					return
				}
			}
		}
	}()
	return func() bool {
		close(done)
		return <-hit
	}
}

// remove deletes the cgroup, waiting for its last process to be gone:
// thousands of killed processes take a moment to exit. A cgroup left
// behind is removed by the next fgimg (removeStaleCgroups).
func (c *pidsCgroup) remove() { removeCgroupDir(c.dir) }

// removeCgroupDir removes the cgroup dir, waiting for its last process to
// be gone.
func removeCgroupDir(dir string) {
	for i := 0; i < 1000; i++ {
		if err := os.Remove(dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ownPidsCgroup returns the directory of this process's cgroup in a
// hierarchy with the pids controller: cgroup v2 if it offers pids to
// children, else cgroup v1's pids hierarchy.
func ownPidsCgroup() (string, error) {
	v1, v2, err := cgroupMounts()
	if err != nil {
		return "", err
	}
	paths, err := ownCgroupPaths()
	if err != nil {
		return "", err
	}
	if p, ok := paths[""]; ok && v2 != "" {
		if dir, ok := v2PidsParent(v2, p); ok {
			return dir, nil
		}
	}
	if p, ok := paths["pids"]; ok && v1 != "" {
		return filepath.Join(v1, p), nil
	}
	return "", errors.New("no cgroup hierarchy with the pids controller")
}

// v2PidsParent returns the cgroup v2 directory to create command cgroups
// in: fgimg's own cgroup, or the nearest ancestor, that hands the pids
// controller to its children. A cgroup holding processes cannot start
// handing it (v2's no-internal-process rule; a systemd scope is such a
// cgroup), but its slice usually does already; the root cgroup can
// always be made to.
func v2PidsParent(mount, own string) (string, bool) {
	for p := filepath.Clean("/" + own); ; p = filepath.Dir(p) {
		dir := filepath.Join(mount, p)
		ctl := filepath.Join(dir, "cgroup.subtree_control")
		b, err := os.ReadFile(ctl)
		if err != nil {
			return "", false
		}
		if !handsPids(b) && p == "/" {
			_ = os.WriteFile(ctl, []byte("+pids"), 0)
			b, _ = os.ReadFile(ctl)
		}
		if handsPids(b) {
			// The memory and CPU bounds (memCgroup, cpuCgroup) go in
			// the same cgroup when this one can hand those controllers
			// too.
			for _, c := range []string{"memory", "cpu"} {
				if !slices.Contains(strings.Fields(string(b)), c) {
					_ = os.WriteFile(ctl, []byte("+"+c), 0)
				}
			}
			return dir, true
		}
		if p == "/" {
			return "", false
		}
	}
}

// handsPids reports whether a cgroup.subtree_control names pids.
func handsPids(subtreeControl []byte) bool {
	return slices.Contains(strings.Fields(string(subtreeControl)), "pids")
}

// cgroupMounts finds the mount points of cgroup v1's pids hierarchy and
// of cgroup v2.
func cgroupMounts() (v1, v2 string, err error) {
	mounts, err := mountinfo.Self()
	if err != nil {
		return "", "", err
	}
	for _, m := range mounts {
		if m.Root != "/" {
			continue
		}
		switch {
		case m.FSType == "cgroup2" && v2 == "":
			v2 = m.Point
		case m.FSType == "cgroup" && v1 == "" && slices.Contains(strings.Split(m.Super, ","), "pids"):
			v1 = m.Point
		}
	}
	return v1, v2, nil
}

// ownCgroupPaths reads /proc/self/cgroup: controller -> path, with ""
// for cgroup v2.
func ownCgroupPaths() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	paths := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			paths[c] = parts[2]
		}
	}
	return paths, nil
}
