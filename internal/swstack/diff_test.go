package swstack_test

import (
	"reflect"
	"testing"

	"github.com/fgimg/fgimg/internal/swstack"
)

func TestDiff(t *testing.T) {
	a := &swstack.Stack{
		Packages: []swstack.Package{
			{Name: "bash", Version: "5.2.15-2+b7", Arch: "amd64"},
			{Name: "libc6", Version: "2.36-9", Arch: "amd64", Source: "glibc"},
			{Name: "libc6", Version: "2.36-9", Arch: "i386", Source: "glibc"},
			{Name: "nano", Version: "7.2-1", Arch: "amd64"},
		},
		Kernels:  []string{"6.1.0-28-amd64"},
		Services: []string{"cron.service", "ssh.service"},
	}
	b := &swstack.Stack{
		Packages: []swstack.Package{
			{Name: "bash", Version: "5.2.15-2+b8", Arch: "amd64"},
			{Name: "libc6", Version: "2.36-9", Arch: "amd64", Source: "glibc"},
			{Name: "openmpi-bin", Version: "4.1.4-3", Arch: "amd64", Source: "openmpi"},
		},
		Kernels:  []string{"6.1.0-30-amd64"},
		Services: []string{"ssh.service", "slurmd.service"},
	}
	want := &swstack.Delta{
		Added: []swstack.Package{{Name: "openmpi-bin", Version: "4.1.4-3", Arch: "amd64", Source: "openmpi"}},
		Removed: []swstack.Package{
			{Name: "libc6", Version: "2.36-9", Arch: "i386", Source: "glibc"},
			{Name: "nano", Version: "7.2-1", Arch: "amd64"},
		},
		Changed:         []swstack.PackageChange{{Name: "bash", Arch: "amd64", From: "5.2.15-2+b7", To: "5.2.15-2+b8"}},
		KernelsAdded:    []string{"6.1.0-30-amd64"},
		KernelsRemoved:  []string{"6.1.0-28-amd64"},
		ServicesAdded:   []string{"slurmd.service"},
		ServicesRemoved: []string{"cron.service"},
	}
	d := swstack.Diff(a, b)
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Diff:\n got %+v\nwant %+v", d, want)
	}
	if d.Empty() {
		t.Error("Empty() on a non-empty delta")
	}
	if d := swstack.Diff(a, a); !d.Empty() {
		t.Errorf("a stack against itself: %+v", d)
	}
	if d := swstack.Diff(nil, b); len(d.Added) != 3 || len(d.Removed) != 0 {
		t.Errorf("against nil: %+v", d)
	}
}
