package mountinfo

import (
	"os"
	"testing"
)

func TestParse(t *testing.T) {
	m, err := parse(`36 35 98:0 /mnt1 /mnt/my\040dir rw,noatime master:1 - cgroup cgroup rw,pids`)
	if err != nil {
		t.Fatal(err)
	}
	want := Mount{Root: "/mnt1", Point: "/mnt/my dir", FSType: "cgroup", Source: "cgroup", Super: "rw,pids"}
	if m != want {
		t.Errorf("got %+v\nwant %+v", m, want)
	}
	if _, err := parse("36 35 98:0 / /mnt rw"); err == nil {
		t.Error("a line without the separator was accepted")
	}
}

func TestSelfHasRoot(t *testing.T) {
	mounts, err := Self()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mounts {
		if m.Point == "/" {
			return
		}
	}
	if _, err := os.Stat("/proc/self/mountinfo"); err == nil {
		t.Errorf("no mount at / among %d mounts", len(mounts))
	}
}
