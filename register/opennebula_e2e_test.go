package register_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fgimg/fgimg/register"
	"github.com/fgimg/fgimg/register/opennebula"
	"github.com/fgimg/fgimg/register/registertest"
)

// OpenNebula through register, against the protocol fake of oned: the
// first register uploads, the second reuses.
func TestOpenNebulaRegisterTwice(t *testing.T) {
	registertest.OpenNebula(t, "alice", "s3cret-pw")

	out, o, log := setup(t, nil)
	o.Open = func(_ context.Context, f *register.File) (register.Cloud, error) { return opennebula.Open(f) }
	f := registertest.Disk("one")
	f.Kind, f.Steps[0].Visibility = "opennebula", "600"
	src := filepath.Join(t.TempDir(), "disk.qcow2")
	registertest.Qcow2(t, src, 256<<10, 1)
	registertest.Write(t, out, f, map[string]string{"disk.qcow2": src})
	o.Targets = []string{"one"}
	for i, want := range []string{register.OpUpload, register.OpSkip} {
		res := register.Run(context.Background(), o)
		if res[0].Err != nil {
			t.Fatalf("register %d: %v\n%s", i+1, res[0].Err, log)
		}
		if got := res[0].Plan.Actions; len(got) != 1 || got[0].Op != want {
			t.Fatalf("register %d planned %+v; want %s\n%s", i+1, got, want, log)
		}
	}
}
