package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/mountinfo"
)

// DefaultMaxMemory returns the memory bound of a command when
// Spec.MaxMemory is zero: three quarters of the host's memory, generous
// for any build yet short of starving the host.
func DefaultMaxMemory() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kib, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib * 1024 / 4 * 3
		}
	}
	return 0
}

// MemoryLimitError reports a command that failed after the kernel's OOM
// killer ended a process of it at its memory bound.
type MemoryLimitError struct{ Limit int64 }

func (e *MemoryLimitError) Error() string {
	return fmt.Sprintf("stopped: the command ran out of its memory limit of %d MiB and the kernel's OOM killer ended it (fgimg build --stage-memory sets another limit)", e.Limit>>20)
}

// memCgroup bounds a command's memory, swap included: cgroup v2's
// memory.max with memory.swap.max 0, or v1's memory.limit_in_bytes and
// memory.memsw.limit_in_bytes.
type memCgroup struct {
	dir    string
	v2     bool
	shared bool // the pids cgroup's own directory: added and removed with it
}

// newMemCgroup sets the memory bound of the command's cgroup: in pids's
// directory when that is a cgroup v2 one with the memory controller, else
// in a cgroup of its own in v1's memory hierarchy. It fails where no
// memory cgroup can be made (without root, say).
func newMemCgroup(limit int64, pids *pidsCgroup) (*memCgroup, error) {
	n := []byte(strconv.FormatInt(limit, 10))
	if pids != nil {
		if _, err := os.Stat(filepath.Join(pids.dir, "memory.max")); err == nil {
			if err := os.WriteFile(filepath.Join(pids.dir, "memory.max"), n, 0); err != nil {
				return nil, err
			}
			// No swap: the bound is on memory and swap together.
			_ = os.WriteFile(filepath.Join(pids.dir, "memory.swap.max"), []byte("0"), 0)
			return &memCgroup{dir: pids.dir, v2: true, shared: true}, nil
		}
	}
	dir, err := newV1CgroupDir("memory")
	if err != nil {
		return nil, err
	}
	c := &memCgroup{dir: dir}
	if err := os.WriteFile(filepath.Join(dir, "memory.limit_in_bytes"), n, 0); err != nil {
		c.remove()
		return nil, err
	}
	// Absent without swap accounting.
	_ = os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), n, 0)
	return c, nil
}

// newV1CgroupDir creates a cgroup for one command in v1's hierarchy of
// controller, below this process's own.
func newV1CgroupDir(controller string) (string, error) {
	parent, err := ownV1Cgroup(controller)
	if err != nil {
		return "", err
	}
	return newCgroupDir(parent)
}

// ownV1Cgroup returns this process's cgroup in the v1 hierarchy of
// controller.
func ownV1Cgroup(controller string) (string, error) {
	mounts, err := mountinfo.Self()
	if err != nil {
		return "", err
	}
	paths, err := ownCgroupPaths()
	if err != nil {
		return "", err
	}
	own, ok := paths[controller]
	if !ok {
		return "", fmt.Errorf("no cgroup with the %s controller", controller)
	}
	for _, m := range mounts {
		if m.Root == "/" && m.FSType == "cgroup" && slices.Contains(strings.Split(m.Super, ","), controller) {
			return filepath.Join(m.Point, own), nil
		}
	}
	return "", fmt.Errorf("no cgroup hierarchy with the %s controller", controller)
}

func (c *memCgroup) add(pid int) error {
	if c.shared {
		return nil
	}
	return addToCgroup(c.dir, pid)
}

// oomKilled reports whether the OOM killer ended a process of the cgroup.
func (c *memCgroup) oomKilled() bool {
	name := "memory.oom_control"
	if c.v2 {
		name = "memory.events"
	}
	return cgroupCount(filepath.Join(c.dir, name), "oom_kill") > 0
}

func (c *memCgroup) remove() {
	if !c.shared {
		removeCgroupDir(c.dir)
	}
}

// limitMemoryWithoutCgroup bounds each process of the command (the init's
// limits are inherited) with RLIMIT_DATA, where no memory cgroup can be
// made: allocations beyond it fail, per process, without the OOM killer
// and without a MemoryLimitError.
func limitMemoryWithoutCgroup(pid int, limit int64) error {
	lim := unix.Rlimit{Cur: uint64(limit), Max: uint64(limit)}
	if err := unix.Prlimit(pid, unix.RLIMIT_DATA, &lim, nil); err != nil {
		return errors.Join(errors.New("limiting memory"), err)
	}
	return nil
}
