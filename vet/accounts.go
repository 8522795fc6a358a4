package vet

import (
	"fmt"
	"path"
	"strconv"
	"strings"
)

// noLogin are shells that let no one in.
var noLogin = map[string]bool{"/usr/sbin/nologin": true, "/sbin/nologin": true, "/bin/false": true,
	"/usr/bin/false": true, "/bin/sync": true, "/usr/bin/sync": true, "/sbin/halt": true, "/sbin/shutdown": true, "": false}

type account struct {
	name, passwd, shell string
	uid                 int
	shadow              *string // nil without a shadow entry
}

// accounts reports accounts anyone can log in to without a password,
// root with a password, a second UID 0 and system accounts with a shell.
func (img *image) accounts() error {
	pw, err := img.read("/etc/passwd")
	if err != nil || pw == nil {
		return err
	}
	sh, err := img.read("/etc/shadow")
	if err != nil {
		return err
	}
	shadow := map[string]string{}
	for _, l := range lines(sh) {
		f := strings.Split(l, ":")
		if len(f) >= 2 {
			shadow[f[0]] = f[1]
		}
	}
	for _, l := range lines(pw) {
		f := strings.Split(l, ":")
		if len(f) < 7 {
			continue
		}
		uid, err := strconv.Atoi(f[2])
		if err != nil {
			continue
		}
		a := account{name: f[0], passwd: f[1], uid: uid, shell: f[6]}
		if s, ok := shadow[a.name]; ok {
			a.shadow = &s
		}
		img.account(a)
	}
	return nil
}

func (img *image) account(a account) {
	hash := a.passwd
	where := "/etc/passwd"
	if a.passwd == "x" && a.shadow != nil {
		hash, where = *a.shadow, "/etc/shadow"
	}
	canLogIn := !noLogin[a.shell]
	switch {
	case hash == "" && canLogIn:
		sev := High
		if a.uid == 0 {
			sev = Critical
		}
		img.add(Finding{ID: IDEmptyPassword, Severity: sev, Path: where,
			Detail: fmt.Sprintf("%s (uid %d, shell %s) has an empty password: anyone can log in as %s", a.name, a.uid, a.shell, a.name),
			Fix:    fmt.Sprintf("lock the account (run: passwd --lock %s) and log in with SSH keys (a user block's ssh_authorized_keys)", a.name)})
	case a.uid == 0 && a.name == "root" && usableHash(hash):
		img.add(Finding{ID: IDRootPassword, Severity: Medium, Path: where,
			Detail: "root has a password: password login for root, the same password on every instance",
			Fix:    "lock root's password (run: passwd --lock root); give admins a user with sudo and SSH keys"})
	}
	if a.uid == 0 && a.name != "root" {
		img.add(Finding{ID: IDSecondUID0, Severity: Critical, Path: "/etc/passwd",
			Detail: a.name + " has uid 0: a second root",
			Fix:    "give " + a.name + " its own uid (a user block's uid) and sudo rights if it needs them"})
	}
	if a.uid > 0 && a.uid < 1000 && canLogIn && a.shell != "" && !strings.HasPrefix(hash, "!") && hash != "*" {
		img.add(Finding{ID: IDSystemShell, Severity: Low, Path: "/etc/passwd",
			Detail: fmt.Sprintf("system account %s (uid %d) has the shell %s", a.name, a.uid, a.shell),
			Fix:    "give it /usr/sbin/nologin (run: usermod -s /usr/sbin/nologin " + a.name + "), or a uid from 1000 if it is a person"})
	}
}

// usableHash says whether a password field holds a password one can log
// in with: not empty, not locked (!), not * or x.
func usableHash(h string) bool {
	return h != "" && !strings.HasPrefix(h, "!") && !strings.HasPrefix(h, "*") && h != "x"
}

// sshd reports the SSH server's password logins, host keys baked into
// the image and authorized keys (for information, with whose).
func (img *image) sshd() error {
	cfg, err := img.read("/etc/ssh/sshd_config")
	if err != nil {
		return err
	}
	if cfg != nil {
		if err := img.sshdConfig(cfg); err != nil {
			return err
		}
	}
	keys, err := img.glob("/etc/ssh", "ssh_host_*_key")
	if err != nil {
		return err
	}
	for _, k := range keys {
		img.add(Finding{ID: IDSSHHostKeys, Severity: High, Path: k,
			Detail: "an SSH host key is baked into the image: every instance would share it, and any one can impersonate the others",
			Fix:    "remove the host keys at the end of the build (run: rm -f /etc/ssh/ssh_host_*_key*) and generate them on first boot (ssh-keygen -A in a unit, or cloud-init)"})
	}
	homes := []string{"/root"}
	if hs, err := img.glob("/home", "*"); err == nil {
		homes = append(homes, hs...)
	}
	for _, h := range homes {
		for _, n := range []string{"authorized_keys", "authorized_keys2"} {
			p := path.Join(h, ".ssh", n)
			b, err := img.read(p)
			if err != nil || b == nil {
				continue
			}
			var whose []string
			for _, l := range lines(b) {
				if f := strings.Fields(l); len(f) >= 3 {
					whose = append(whose, f[len(f)-1])
				} else {
					whose = append(whose, "(no comment)")
				}
			}
			if len(whose) == 0 {
				continue
			}
			img.add(Finding{ID: IDSSHAuthorized, Severity: Info, Path: p,
				Detail: fmt.Sprintf("%d authorized key(s) for %s: %s", len(whose), path.Base(h), strings.Join(whose, ", ")),
				Fix:    "check that these keys should reach every instance (a user block's ssh_authorized_keys)"})
		}
	}
	return nil
}

// sshdConfig evaluates the global section of sshd_config as sshd does:
// Include expanded in place, the first value of a keyword wins, a Match
// block ends the global section.
func (img *image) sshdConfig(main []byte) error {
	values := map[string]string{}
	from := map[string]string{}
	var read func(p string, b []byte, depth int) (stop bool, err error)
	read = func(p string, b []byte, depth int) (bool, error) {
		for _, l := range lines(b) {
			f := strings.Fields(l)
			key := strings.ToLower(strings.TrimSuffix(f[0], "="))
			if len(f) < 2 {
				continue
			}
			val := strings.TrimPrefix(f[1], "=")
			switch key {
			case "match":
				return true, nil
			case "include":
				if depth > 8 {
					continue
				}
				for _, pat := range f[1:] {
					if !strings.HasPrefix(pat, "/") {
						pat = "/etc/ssh/" + pat
					}
					files, err := img.glob(path.Dir(pat), path.Base(pat))
					if err != nil {
						return false, err
					}
					for _, inc := range files {
						b, err := img.read(inc)
						if err != nil {
							return false, err
						}
						if stop, err := read(inc, b, depth+1); stop || err != nil {
							return stop, err
						}
					}
				}
				continue
			}
			if _, ok := values[key]; !ok {
				values[key], from[key] = strings.ToLower(val), p
			}
		}
		return false, nil
	}
	if _, err := read("/etc/ssh/sshd_config", main, 0); err != nil {
		return err
	}
	get := func(key, def string) (string, string) {
		if v, ok := values[key]; ok {
			return v, from[key]
		}
		return def, "/etc/ssh/sshd_config"
	}
	pass, passFrom := get("passwordauthentication", "yes")
	kbd, _ := get("kbdinteractiveauthentication", "yes")
	if _, ok := values["kbdinteractiveauthentication"]; !ok {
		kbd, _ = get("challengeresponseauthentication", "yes")
	}
	root, rootFrom := get("permitrootlogin", "prohibit-password")
	passwords := pass == "yes" || kbd == "yes"
	if root == "yes" && passwords {
		img.add(Finding{ID: IDSSHRootPassword, Severity: High, Path: rootFrom,
			Detail: "sshd lets root log in with a password (PermitRootLogin yes, password authentication on)",
			Fix:    "set PermitRootLogin no (or prohibit-password) in a file block for /etc/ssh/sshd_config.d/50-local.conf"})
	}
	if pass == "yes" {
		img.add(Finding{ID: IDSSHPasswordAuth, Severity: Medium, Path: passFrom,
			Detail: "sshd takes passwords (PasswordAuthentication yes" + map[bool]string{true: ", the default", false: ""}[values["passwordauthentication"] == ""] + "): passwords can be guessed from the network",
			Fix:    "set PasswordAuthentication no and KbdInteractiveAuthentication no in a file block for /etc/ssh/sshd_config.d/50-local.conf; log in with keys"})
	}
	return nil
}

// machineID reports a machine ID baked into the image: every instance
// would share it (journald, DHCP client IDs, D-Bus).
func (img *image) machineID() error {
	for _, p := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if fi, err := img.lstat(p); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		b, err := img.read(p)
		if err != nil {
			return err
		}
		if s := strings.TrimSpace(string(b)); s != "" && s != "uninitialized" {
			img.add(Finding{ID: IDMachineID, Severity: High, Path: p,
				Detail: "the machine ID " + s + " is baked into the image: every instance would share it",
				Fix:    "empty it at the end of the build (run: truncate -s 0 /etc/machine-id && rm -f /var/lib/dbus/machine-id); systemd makes one on first boot"})
		}
	}
	return nil
}

// repositories reports package sources configured without signature
// checks: their packages come from a repository no key vouches for.
func (img *image) repositories() error {
	files := []string{"/etc/apt/sources.list"}
	for _, pat := range []string{"*.list", "*.sources"} {
		fs, err := img.glob("/etc/apt/sources.list.d", pat)
		if err != nil {
			return err
		}
		files = append(files, fs...)
	}
	for _, p := range files {
		b, err := img.read(p)
		if err != nil {
			return err
		}
		for _, l := range lines(b) {
			low := strings.ToLower(strings.ReplaceAll(l, " ", ""))
			if strings.Contains(low, "trusted=yes") || strings.Contains(low, "trusted:yes") ||
				strings.Contains(low, "allow-insecure=yes") || strings.Contains(low, "allow-insecure:yes") {
				img.add(Finding{ID: IDUnsignedRepo, Severity: High, Path: p,
					Detail: "a package source is trusted without a signature: " + l,
					Fix:    "remove trusted=yes and give the repository's key (Signed-By) in the file block for " + p})
			}
		}
	}
	return nil
}
