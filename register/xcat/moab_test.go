package xcat

import (
	"os"
	"path/filepath"
	"testing"
)

// moab.cfg is edited in place: only OSLIST words change, every other line
// and attribute stays as the site wrote it.
func TestMoabConfigEdits(t *testing.T) {
	p := filepath.Join(t.TempDir(), "moab.cfg")
	const in = `# site config
SCHEDCFG[Moab] SERVER=mn:42559
NODECFG[DEFAULT]   PARTITION=hpc OSLIST=compute,gpu  PRIORITY=10
NODECFG[node01] PARTITION=hpc
`
	if err := os.WriteFile(p, []byte(in), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := readMoabConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.add([]string{"DEFAULT", "node01"}, "hpc", "hpc-0123") || cfg.add([]string{"DEFAULT", "node01"}, "hpc") {
		t.Error("add: changed reported wrongly")
	}
	if err := cfg.write(p); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	want := `# site config
SCHEDCFG[Moab] SERVER=mn:42559
NODECFG[DEFAULT]   PARTITION=hpc OSLIST=compute,gpu,hpc,hpc-0123  PRIORITY=10
NODECFG[node01] PARTITION=hpc
NODECFG[node01] OSLIST=hpc,hpc-0123
`
	if string(b) != want {
		t.Errorf("after add:\n%s\nwant:\n%s", b, want)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v", fi.Mode())
	}
	cfg, _ = readMoabConfig(p)
	if !cfg.remove("hpc-0123") || !cfg.remove("hpc") || cfg.remove("hpc") {
		t.Error("remove: changed reported wrongly")
	}
	cfg.write(p)
	b, _ = os.ReadFile(p)
	want = `# site config
SCHEDCFG[Moab] SERVER=mn:42559
NODECFG[DEFAULT]   PARTITION=hpc OSLIST=compute,gpu  PRIORITY=10
NODECFG[node01] PARTITION=hpc
`
	if string(b) != want {
		t.Errorf("after remove:\n%s\nwant:\n%s", b, want)
	}
	missing, _ := readMoabConfig(filepath.Join(t.TempDir(), "moab.cfg"))
	if missing.remove("hpc") || !missing.add([]string{"DEFAULT"}, "hpc") || missing.write(missing.path) == nil {
		t.Error("a missing moab.cfg: removal is nothing to do, an addition an error")
	}
}
