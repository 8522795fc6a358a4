package stages

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/jks"
)

// buildTraces are files a package manager writes that record when and
// how the image was built rather than what it holds: logs with the time
// of day and ldconfig's cache of inode numbers and times. They make two
// builds of the same inputs differ, so they are removed, as debuerreotype
// (debuerreotype-fixup) and the reproducible-builds system-images notes
// do. The stage's full log keeps what they said.
var buildTraces = []string{
	"/var/log/dpkg.log",
	"/var/log/bootstrap.log",
	"/var/log/alternatives.log",
	"/var/log/apt/history.log",
	"/var/log/apt/term.log",
	"/var/log/apt/eipp.log.xz",
	"/var/cache/ldconfig/aux-cache",
	"/var/log/dnf.log",
	"/var/log/dnf.librepo.log",
	"/var/log/dnf.rpm.log",
	"/var/log/hawkey.log",
	"/var/log/yum.log",
}

const dbusMachineID = "/var/lib/dbus/machine-id"

// javaCacerts is the JKS keystore ca-certificates-java writes, whose
// entries carry the time they were added.
const javaCacerts = "/etc/ssl/certs/java/cacerts"

// scrubBuildTraces makes a stage that installed packages reproducible: it
// removes buildTraces, empties a machine identity written during the
// build (systemd makes one on first boot, as an image should have it),
// and, when the build has a SOURCE_DATE_EPOCH, sets the Java keystore's
// entry times to it. What a stage before this one left is scrubbed too,
// so an image's history does not matter.
func scrubBuildTraces(r *root, env *Env) error {
	var removed []string
	for _, p := range buildTraces {
		if _, err := r.lstat(p); err != nil {
			continue
		}
		if err := r.remove(p); err != nil {
			return err
		}
		removed = append(removed, p)
	}
	if len(removed) > 0 {
		fmt.Fprintf(env.Log, "fgimg: removed build logs and caches that record the build's time: %s\n", strings.Join(removed, " "))
	}
	if st, err := r.lstat("/etc/machine-id"); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && st.Size > 0 {
		if err := r.writeFile("/etc/machine-id", nil, 0o444, 0, 0); err != nil {
			return fmt.Errorf("emptying /etc/machine-id: %w", err)
		}
		fmt.Fprintln(env.Log, "fgimg: emptied /etc/machine-id (systemd makes the machine's own on first boot)")
	}
	// D-Bus's copy is a link to /etc/machine-id, or a file of its own.
	if st, err := r.lstat(dbusMachineID); err == nil && st.Mode&unix.S_IFMT == unix.S_IFREG {
		if err := r.remove(dbusMachineID); err != nil {
			return err
		}
		fmt.Fprintln(env.Log, "fgimg: removed "+dbusMachineID)
	}
	if env.Epoch != nil {
		if err := normaliseKeystore(r, env); err != nil {
			return fmt.Errorf("%s: %w", javaCacerts, err)
		}
	}
	return nil
}

// normaliseKeystore sets the Java keystore's entry times to the epoch. A
// keystore under another password than Java's default is left alone and
// said so: rewriting it would need the password.
func normaliseKeystore(r *root, env *Env) error {
	st, err := r.lstat(javaCacerts)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil // none, or a link to a keystore this stage did not write
	}
	b, err := r.readFile(javaCacerts)
	if err != nil {
		return err
	}
	out, err := jks.SetTimes(b, jks.DefaultPassword, *env.Epoch)
	if errors.Is(err, jks.ErrNotJKS) {
		return nil // a PKCS12 keystore has no entry times to set
	}
	if err != nil {
		fmt.Fprintf(env.Log, "fgimg: %s left as it is, so not reproducible: %v\n", javaCacerts, err)
		return nil
	}
	if err := r.writeFile(javaCacerts, out, st.Mode&0o7777, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	fmt.Fprintf(env.Log, "fgimg: set the entry times of %s to SOURCE_DATE_EPOCH\n", javaCacerts)
	return nil
}
