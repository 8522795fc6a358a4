package hpcfake

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/fgimg/fgimg/register/baremetal"
)

// Site is the fakes installed on PATH for one test, as a management node:
// their state, Moab's home (with etc/moab.cfg) and the bare-metal lock, all
// in the test's temporary directories.
type Site struct {
	State    string // the fakes' state directory
	MoabHome string
	MoabCfg  string
	Lock     string
}

// MoabCfg is the moab.cfg a Site starts with: a scheduler, and an OSLIST
// for the DEFAULT node entry that fgimg must keep.
const MoabCfg = `# moab.cfg
SCHEDCFG[Moab] SERVER=mn:42559
RMCFG[mn] TYPE=NATIVE:xcat
NODECFG[DEFAULT] OSLIST=compute
`

// Install puts the fakes first on PATH (links to the running test binary,
// whose TestMain calls Dispatch) and points MOABHOMEDIR, the fakes' state
// and the bare-metal lock at the test's directories.
func Install(tb testing.TB) *Site {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	bin := tb.TempDir()
	for _, c := range Commands {
		if err := os.Symlink(exe, filepath.Join(bin, c)); err != nil {
			tb.Fatal(err)
		}
	}
	s := &Site{State: tb.TempDir(), MoabHome: tb.TempDir()}
	s.MoabCfg = filepath.Join(s.MoabHome, "etc", "moab.cfg")
	s.Lock = filepath.Join(tb.TempDir(), "baremetal.lock")
	if err := os.MkdirAll(filepath.Dir(s.MoabCfg), 0o755); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(s.MoabCfg, []byte(MoabCfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	tb.Setenv(StateEnv, s.State)
	tb.Setenv("MOABHOMEDIR", s.MoabHome)
	tb.Setenv(baremetal.LockEnv, s.Lock)
	return s
}

// Load returns the fakes' state now.
func (s *Site) Load(tb testing.TB) *State {
	tb.Helper()
	st, err := Load(s.State)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}
