package stages

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/jks"
	"github.com/fgimg/fgimg/internal/testkit"
)

// timeApt stands in for apt-get as a real install behaves for
// reproducibility: it writes the time of day into dpkg's, apt's and
// update-alternatives' logs and ldconfig's cache, and a fresh machine
// identity, as systemd's postinst does.
const timeApt = `#!/bin/sh
case "$1" in
install)
	mkdir -p /var/log/apt /var/cache/ldconfig /var/lib/dbus
	now=$(cat /proc/sys/kernel/random/uuid)
	echo "$now status installed hello" >> /var/log/dpkg.log
	echo "Start-Date: $now" >> /var/log/apt/history.log
	echo "Log started: $now" >> /var/log/apt/term.log
	echo "update-alternatives $now" >> /var/log/alternatives.log
	echo "$now" > /var/cache/ldconfig/aux-cache
	echo "$now" | tr -d - > /etc/machine-id
	echo "$now" > /var/lib/dbus/machine-id
	echo "Setting up hello ..." ;;
esac
`

// TestPackagesAreReproducible installs the same package twice, each on
// its own copy of one image, as a rebuild does: what the two installs
// leave must be the same bytes, though apt wrote the time into its logs
// and systemd a fresh machine ID, and the Java keystore carries the time
// its entries were added.
func TestPackagesAreReproducible(t *testing.T) {
	keystore, err := os.ReadFile("../internal/jks/testdata/keytool.jks")
	if err != nil {
		t.Fatal(err)
	}
	epoch := time.Unix(1700000000, 0)
	build := func() (root, log string) {
		root = busyboxRoot(t)
		writeRootFile(t, root, "usr/bin/apt-get", timeApt, 0o755)
		writeRootFile(t, root, "etc/ssl/certs/java/cacerts", string(keystore), 0o644)
		var buf testkit.SyncBuffer
		if _, err := Run(context.Background(), &Packages{Names: []string{"hello"}}, &Env{Root: root, Log: &buf, Arch: debianArch(), Epoch: &epoch}); err != nil {
			t.Fatalf("packages stage: %v\n%s", err, buf.String())
		}
		return root, buf.String()
	}
	a, log := build()
	b, _ := build()
	for _, gone := range append(buildTraces, dbusMachineID) {
		if exists(a, gone[1:]) {
			t.Errorf("%s is still in the image", gone)
		}
	}
	if !strings.Contains(log, "/var/log/dpkg.log") || !strings.Contains(log, "SOURCE_DATE_EPOCH") {
		t.Errorf("the log does not say what was removed and set:\n%s", log)
	}
	if got := readRootFile(t, a, "etc/machine-id"); got != "" {
		t.Errorf("/etc/machine-id = %q, want empty", got)
	}
	// Setting the times to the epoch again changes nothing: every entry
	// has it already, and the keystore's digest verifies.
	ks := []byte(readRootFile(t, a, "etc/ssl/certs/java/cacerts"))
	if again, err := jks.SetTimes(ks, jks.DefaultPassword, epoch); err != nil || !bytes.Equal(again, ks) {
		t.Errorf("the keystore's entries are not all at SOURCE_DATE_EPOCH (%v)", err)
	}
	if diff := diffTrees(t, a, b) + diffTrees(t, b, a); diff != "" {
		t.Errorf("two installs of the same package differ: %s", diff)
	}
}

// diffTrees names the first path whose presence, type or content
// differs between two trees; "" when none does.
func diffTrees(t *testing.T, a, b string) string {
	t.Helper()
	var diff string
	err := filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil || diff != "" {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		fb, err := os.Lstat(filepath.Join(b, rel))
		if err != nil || fb.Mode().Type() != d.Type() {
			diff = rel + ": only in one, or of another type"
			return nil
		}
		if d.Type().IsRegular() {
			x, _ := os.ReadFile(p)
			y, _ := os.ReadFile(filepath.Join(b, rel))
			if !bytes.Equal(x, y) {
				diff = rel + ": other content"
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return diff
}

// TestCloudInitInstallIsScrubbed: the cloud-init stage installs what an
// image lacks through the same path as the packages stage, so apt's
// logs and ldconfig's cache do not stay in its layer either.
func TestCloudInitInstallIsScrubbed(t *testing.T) {
	root := cloudReadyRoot(t)
	os.Remove(filepath.Join(root, "usr/bin/cloud-init"))
	writeRootFile(t, root, "usr/bin/apt-get", timeApt, 0o755)
	log := mustRunStage(t, &CloudInit{Virtio: []string{"virtio_blk"}}, root)
	if !strings.Contains(log, "apt-get install") {
		t.Fatalf("cloud-init was not installed:\n%s", log)
	}
	for _, p := range buildTraces {
		if exists(root, p[1:]) {
			t.Errorf("%s is still in the image", p)
		}
	}
}
