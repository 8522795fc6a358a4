package swstack_test

import (
	"database/sql"

	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/fgimg/fgimg/internal/swstack"
	"github.com/fgimg/fgimg/internal/testkit"
)

// rpmRoot builds two small packages with rpmbuild and records them in a
// root's rpm database (rpm's SQLite backend) as dnf would.
func rpmRoot(t *testing.T, dbdir string) string {
	tools := testkit.Need(t, "rpmbuild", "rpm")
	top := t.TempDir()
	root := t.TempDir()
	// hello-libs is a subpackage: its source rpm is hello's.
	spec := "Name: hello\nVersion: 1.2\nRelease: 3.fc40\nEpoch: 2\nSummary: test\nLicense: MIT\nBuildArch: noarch\n" +
		"%description\ntest\n%package libs\nSummary: libs\n%description libs\nlibs\n%files\n%files libs\n"
	testkit.WriteFile(t, top, "hello.spec", spec)
	out, err := exec.Command(tools[0], "--define", "_topdir "+top, "--quiet", "-bb", filepath.Join(top, "hello.spec")).CombinedOutput()
	if err != nil {
		t.Fatalf("rpmbuild: %v\n%s", err, out)
	}
	rpms, _ := filepath.Glob(filepath.Join(top, "RPMS/noarch", "hello-*.rpm"))
	if len(rpms) != 2 {
		t.Fatalf("rpmbuild made %v", rpms)
	}
	db := filepath.Join(root, dbdir)
	os.MkdirAll(db, 0o755)
	args := append([]string{"--dbpath", db, "--define", "_db_backend sqlite", "-i", "--justdb", "--nodeps", "--ignorearch"}, rpms...)
	if out, err := exec.Command(tools[1], args...).CombinedOutput(); err != nil {
		t.Fatalf("rpm -i: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(db, "rpmdb.sqlite")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestReadRpmSqlite(t *testing.T) {
	for _, dir := range []string{"var/lib/rpm", "usr/lib/sysimage/rpm"} {
		t.Run(dir, func(t *testing.T) {
			st, err := swstack.Read(rpmRoot(t, dir))
			if err != nil {
				t.Fatal(err)
			}
			want := []swstack.Package{
				{Name: "hello", Version: "2:1.2-3.fc40", Arch: "noarch"},
				{Name: "hello-libs", Version: "2:1.2-3.fc40", Arch: "noarch", Source: "hello"},
			}
			if st.Manager != "rpm" || !reflect.DeepEqual(st.Packages, want) {
				t.Errorf("Read: %q %+v, want rpm %+v", st.Manager, st.Packages, want)
			}
		})
	}
}

// A database whose last writes are still in its write-ahead log (rpm
// killed before a checkpoint) is read with them.
func TestReadRpmSqliteWAL(t *testing.T) {
	root := rpmRoot(t, "var/lib/rpm")
	src := filepath.Join(root, "var/lib/rpm/rpmdb.sqlite")
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=journal_mode(WAL)&_pragma=wal_autocheckpoint(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DELETE FROM Packages WHERE hnum = (SELECT MAX(hnum) FROM Packages)"); err != nil {
		t.Fatal(err)
	}
	// Copy the database and its log while the writer still has them open.
	crashed := t.TempDir()
	for _, f := range []string{"rpmdb.sqlite", "rpmdb.sqlite-wal"} {
		b, err := os.ReadFile(filepath.Join(root, "var/lib/rpm", f))
		if err != nil {
			t.Fatal(err)
		}
		if f == "rpmdb.sqlite-wal" && len(b) == 0 {
			t.Fatal("the write-ahead log is empty: the test's premise failed")
		}
		testkit.WriteFile(t, crashed, "var/lib/rpm/"+f, string(b))
	}
	st, err := swstack.Read(crashed)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Packages) != 1 {
		t.Errorf("read %d packages, want the 1 left after the logged delete: %+v", len(st.Packages), st.Packages)
	}
}
