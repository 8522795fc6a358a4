package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// cpuPeriod is the period, in microseconds, over which a command's CPU
// quota is counted.
const cpuPeriod = 100000

// cpuCgroup bounds a command's CPU time to a quota per period: cgroup
// v2's cpu.max, or v1's cpu.cfs_quota_us and cpu.cfs_period_us.
type cpuCgroup struct {
	dir    string
	shared bool // the pids cgroup's own directory: added and removed with it
}

// cpuQuota is the quota, in microseconds per cpuPeriod, of cpus CPUs.
func cpuQuota(cpus float64) int64 {
	return max(int64(cpus*cpuPeriod), 1000) // the kernel's least
}

// newCPUCgroup sets the CPU bound of the command's cgroup: in pids's
// directory when that is a cgroup v2 one with the cpu controller, else in
// a cgroup of its own in v1's cpu hierarchy. It fails where no cpu cgroup
// can be made (without root, say).
func newCPUCgroup(cpus float64, pids *pidsCgroup) (*cpuCgroup, error) {
	quota := strconv.FormatInt(cpuQuota(cpus), 10)
	if pids != nil {
		if _, err := os.Stat(filepath.Join(pids.dir, "cpu.max")); err == nil {
			if err := os.WriteFile(filepath.Join(pids.dir, "cpu.max"), []byte(quota+" "+strconv.Itoa(cpuPeriod)), 0); err != nil {
				return nil, err
			}
			return &cpuCgroup{dir: pids.dir, shared: true}, nil
		}
	}
	dir, err := newV1CgroupDir("cpu")
	if err != nil {
		return nil, err
	}
	c := &cpuCgroup{dir: dir}
	for _, f := range [][2]string{{"cpu.cfs_period_us", strconv.Itoa(cpuPeriod)}, {"cpu.cfs_quota_us", quota}} {
		if err := os.WriteFile(filepath.Join(dir, f[0]), []byte(f[1]), 0); err != nil {
			c.remove()
			return nil, fmt.Errorf("%s: %w", f[0], err)
		}
	}
	return c, nil
}

func (c *cpuCgroup) add(pid int) error {
	if c.shared {
		return nil
	}
	return addToCgroup(c.dir, pid)
}

func (c *cpuCgroup) remove() {
	if !c.shared {
		removeCgroupDir(c.dir)
	}
}
