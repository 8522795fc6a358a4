package vet

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/fgimg/fgimg/internal/rootpath"
)

// skipDirs hold no files of the image's own at run time.
var skipDirs = map[string]bool{"/proc": true, "/sys": true, "/dev": true, "/run": true}

// walk steps through the whole tree once (never following a symlink)
// for the checks that look at every file: world-writable files, setuid
// and setgid files (judged once the packages are verified), files under
// /usr no package owns, and secrets left behind.
func (img *image) walk() error {
	return filepath.WalkDir(img.dir, func(host string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		p := "/" + filepath.ToSlash(strings.TrimPrefix(strings.TrimPrefix(host, img.dir), "/"))
		if d.IsDir() && skipDirs[p] {
			return fs.SkipDir
		}
		if d.Name() == ".git" {
			if _, owned := img.owner(p); !owned {
				img.add(Finding{ID: IDGitDir, Severity: Medium, Path: p,
					Detail: "a git repository (its history, perhaps credentials in its config) is in the image",
					Fix:    "copy the files without .git (a file block with a source that has no .git), or remove it in run"})
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
		}
		t := d.Type()
		if t&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeSymlink) != 0 {
			if t&fs.ModeSymlink != 0 {
				img.unownedUsr(p, host)
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		m := fi.Mode()
		if m.Perm()&0o002 != 0 {
			switch {
			case m.IsDir() && m&fs.ModeSticky == 0:
				img.add(Finding{ID: IDWorldWritableDir, Severity: High, Path: p,
					Detail: "directory writable by every user, without the sticky bit (" + modeString(m) + ")",
					Fix:    "set its mode to 0755 (or 1777 for a shared scratch directory): the file block's mode, or chmod in run"})
			case m.IsRegular():
				img.add(Finding{ID: IDWorldWritable, Severity: High, Path: p,
					Detail: "file writable by every user (" + modeString(m) + ")",
					Fix:    "set its mode to 0644 (or 0755 for a program): the file block's mode, or chmod o-w in run"})
			}
		}
		if !m.IsRegular() {
			return nil
		}
		if m&(fs.ModeSetuid|fs.ModeSetgid) != 0 {
			img.setuid = append(img.setuid, walked{p, m})
		}
		if _, owned := img.owner(p); owned {
			return nil
		}
		img.unownedUsr(p, host)
		return img.secrets(p, fi)
	})
}

func modeString(m fs.FileMode) string {
	perm := uint32(m.Perm())
	for bit, v := range map[fs.FileMode]uint32{fs.ModeSetuid: 0o4000, fs.ModeSetgid: 0o2000, fs.ModeSticky: 0o1000} {
		if m&bit != 0 {
			perm |= v
		}
	}
	return fmt.Sprintf("mode %04o", perm)
}

// unownedUsr reports a file under /usr that no package owns (in an image
// with a dpkg database): it came from outside any package, so nothing
// updates or verifies it. /usr/local and what package scripts generate
// (caches, compiled Python, alternatives' links) are left out.
func (img *image) unownedUsr(p, host string) {
	if img.pkgs == nil || !strings.HasPrefix(p, "/usr/") || strings.HasPrefix(p, "/usr/local/") {
		return
	}
	if _, owned := img.owner(p); owned {
		return
	}
	base := path.Base(p)
	if strings.HasSuffix(base, ".pyc") || strings.HasSuffix(base, ".cache") || strings.Contains(p, "/__pycache__/") ||
		strings.HasPrefix(p, "/usr/share/mime/") || strings.HasPrefix(p, "/usr/lib/locale/") ||
		p == "/usr/share/info/dir" || strings.HasSuffix(p, "/gconv-modules.cache") || p == "/usr/lib/udev/hwdb.bin" ||
		strings.HasPrefix(p, "/usr/lib/modules/") && strings.HasPrefix(base, "modules.") { // depmod's and udev's indexes
		return
	}
	if t, err := os.Readlink(host); err == nil {
		if strings.HasPrefix(t, "/etc/alternatives/") {
			return
		}
	}
	img.add(Finding{ID: IDUnownedUsr, Severity: Low, Path: p,
		Detail: "no package owns this file under /usr: nothing updates or verifies it",
		Fix:    "install it from a package (packages), or put it under /usr/local or /opt"})
}

// Names of files that hold credentials for clouds and services.
var credentialFiles = []string{
	".aws/credentials", ".config/gcloud/credentials.db", ".config/gcloud/application_default_credentials.json",
	".azure/accessTokens.json", ".azure/msal_token_cache.json", ".config/openstack/clouds.yaml",
	"/etc/openstack/clouds.yaml", ".s3cfg", ".boto", ".one/one_auth", ".netrc", ".docker/config.json", ".kube/config",
}

var historyFiles = []string{".bash_history", ".zsh_history", ".sh_history", ".ash_history", ".history",
	".python_history", ".mysql_history", ".psql_history", ".sqlite_history", ".node_repl_history"}

// maxKeyFile bounds the files read for private keys: keys are small.
const maxKeyFile = 256 << 10

// secrets reports a file no package owns that is a private key, a
// cloud's credentials or a shell history.
func (img *image) secrets(p string, fi fs.FileInfo) error {
	base := path.Base(p)
	for _, c := range credentialFiles {
		if strings.HasPrefix(c, "/") && p == c || !strings.HasPrefix(c, "/") && strings.HasSuffix(p, "/"+c) {
			img.add(Finding{ID: IDCloudCredentials, Severity: Critical, Path: p,
				Detail: "credentials (" + c + ") are in the image: whoever gets the image gets them",
				Fix:    "never put credentials in an image: remove the file block or run command that writes " + p + "; give them at run time (cloud-init, a secret store)"})
			return nil
		}
	}
	for _, h := range historyFiles {
		if base == h && fi.Size() > 0 {
			img.add(Finding{ID: IDShellHistory, Severity: Medium, Path: p,
				Detail: "a shell history (commands typed, perhaps passwords) is in the image",
				Fix:    "remove it in run (rm -f " + p + "), and build with run commands rather than by hand"})
			return nil
		}
	}
	if fi.Size() == 0 || fi.Size() > maxKeyFile || strings.HasPrefix(p, "/etc/ssh/ssh_host_") {
		return nil // host keys are ssh.host-keys
	}
	f, err := img.open(p)
	if err != nil {
		return nil // gone or not regular: nothing to read
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile))
	if err != nil {
		return err
	}
	if isPrivateKey(b) {
		img.add(Finding{ID: IDPrivateKey, Severity: High, Path: p,
			Detail: "a private key is in the image: every instance shares it, and whoever gets the image gets it",
			Fix:    "remove the file block or run command that puts it there; generate keys on first boot or give them at run time"})
	}
	return nil
}

// isPrivateKey says whether b is a text file holding a PEM private key:
// a line "-----BEGIN ... PRIVATE KEY-----" followed by a line of base64
// (program code that names the marker, compiled or not, is not a key).
func isPrivateKey(b []byte) bool {
	if bytes.IndexByte(b, 0) >= 0 {
		return false // binary
	}
	lines := bytes.Split(b, []byte("\n"))
	for i, l := range lines[:len(lines)-1] {
		l = bytes.TrimSpace(l)
		if !bytes.HasPrefix(l, []byte("-----BEGIN ")) || !bytes.HasSuffix(l, []byte("PRIVATE KEY-----")) {
			continue
		}
		next := bytes.TrimSpace(lines[i+1])
		base64 := len(bytes.Trim(next, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")) == 0
		if bytes.HasPrefix(next, []byte("Proc-Type:")) || len(next) >= 4 && base64 {
			return true
		}
	}
	return false
}

// stat returns the file info of the image's regular file p.
func (img *image) stat(p string) (fs.FileInfo, error) {
	f, err := img.open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Stat()
}

// lstat returns the file info of the image's p, not following a symlink
// in its last component (the others resolve inside the image).
func (img *image) lstat(p string) (fs.FileInfo, error) {
	dir, err := rootpath.Join(img.dir, path.Dir(p), rootpath.InRoot)
	if err != nil {
		return nil, err
	}
	return os.Lstat(filepath.Join(dir, path.Base(p)))
}
