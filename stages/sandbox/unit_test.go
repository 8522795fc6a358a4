package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUserNSStatus(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error; none: no error
	}{
		{"allowed", map[string]string{"kernel/unprivileged_userns_clone": "1\n", "user/max_user_namespaces": "1000\n"}, nil},
		{"no sysctls", nil, nil},
		{"debian switch off", map[string]string{"kernel/unprivileged_userns_clone": "0\n", "user/max_user_namespaces": "1000\n"},
			[]string{"unprivileged user namespaces are disabled", "kernel.unprivileged_userns_clone is 0", "run fgimg as root"}},
		{"no namespaces allowed", map[string]string{"user/max_user_namespaces": "0\n"},
			[]string{"user.max_user_namespaces is 0", "sysctl -w user.max_user_namespaces"}},
		{"apparmor", map[string]string{"kernel/apparmor_restrict_unprivileged_userns": "1\n"},
			[]string{"kernel.apparmor_restrict_unprivileged_userns is 1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range c.files {
				writeFile(t, filepath.Join(dir, name), content)
			}
			err := userNSStatus(dir)
			if len(c.want) == 0 {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestMountOverlayNeedsIsolation(t *testing.T) {
	dir := t.TempDir()
	unmount, err := MountOverlay([]string{"l"}, dir, "u", "w", filepath.Join(dir, "mnt"))
	if !errors.Is(err, ErrNotIsolated) || unmount != nil {
		t.Errorf("err = %v; want ErrNotIsolated", err)
	}
}

func TestOverlayOptions(t *testing.T) {
	got, err := overlayOptions([]string{"l/b", "l/a"}, "upper", "work", false)
	if want := "lowerdir=l/b:l/a,upperdir=upper,workdir=work"; err != nil || got != want {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	got, _ = overlayOptions([]string{"l"}, "u", "w", true)
	if !strings.HasSuffix(got, ",userxattr") {
		t.Errorf("in a user namespace: %q lacks userxattr", got)
	}
	if _, err := overlayOptions([]string{"a,b"}, "u", "w", false); err == nil {
		t.Error("a comma in a path was accepted")
	}
	if _, err := overlayOptions([]string{"a:b"}, "u", "w", false); err == nil {
		t.Error("a colon in a path was accepted")
	}
	long := make([]string, 100)
	for i := range long {
		long[i] = "/var/lib/fgimg/cache/layers/sha256/" + strings.Repeat("0", 64)
	}
	if _, err := overlayOptions(long, "u", "w", false); err == nil || !strings.Contains(err.Error(), "shorter") {
		t.Errorf("over-long options: err = %v", err)
	}
	// Run rejects such a spec before starting anything.
	if err := Run(t.Context(), Spec{Lower: long, Upper: "u", Work: "w", Args: []string{"true"}}); err == nil {
		t.Error("Run accepted over-long overlay options")
	}
}

func TestRunRejectsIncompleteSpec(t *testing.T) {
	for _, s := range []Spec{
		{Upper: "u", Args: nil},
		{Args: []string{"true"}},
		{Lower: []string{"l"}, Upper: "u", Args: []string{"true"}},
	} {
		if err := Run(t.Context(), s); err == nil {
			t.Errorf("Run(%+v) succeeded", s)
		}
	}
}

func TestLoopbackResolverRewrite(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ name, host, want string }{
		{"systemd-resolved", "# stub\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n",
			"# stub\nnameserver " + dnsForwardAddr + "\noptions edns0 trust-ad\nsearch lan\n"},
		{"two loopback servers", "nameserver 127.0.0.1\nnameserver ::1\n", "nameserver " + dnsForwardAddr + "\n"},
		{"reachable server", "nameserver 10.0.0.2\n", ""},
		{"mixed", "nameserver 127.0.0.53\nnameserver 10.0.0.2\n", ""},
		{"no server", "search lan\n", ""},
	} {
		host := filepath.Join(dir, c.name)
		writeFile(t, host, c.host)
		path, forward, err := loopbackResolverRewrite(host)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if c.want == "" {
			if path != "" || forward {
				t.Errorf("%s: rewritten to %s (forward %v); want the host's file as it is", c.name, path, forward)
			}
			continue
		}
		if !forward {
			t.Errorf("%s: no DNS forwarding", c.name)
		}
		if got := readFile(t, path); got != c.want {
			t.Errorf("%s: got %q; want %q", c.name, got, c.want)
		}
		os.Remove(path)
	}
	if _, _, err := loopbackResolverRewrite(filepath.Join(dir, "missing")); err != nil {
		t.Errorf("missing resolv.conf: %v", err)
	}
}

func TestV2PidsParent(t *testing.T) {
	mount := t.TempDir()
	ctl := func(dir, content string) {
		writeFile(t, filepath.Join(mount, dir, "cgroup.subtree_control"), content)
	}
	ctl("", "cpu memory pids\n")
	ctl("user.slice", "cpu memory pids\n")
	ctl("user.slice/session-1.scope", "")
	// A systemd scope holds processes and hands out nothing: the command
	// cgroups go in the nearest ancestor that hands out pids.
	if got, ok := v2PidsParent(mount, "/user.slice/session-1.scope"); !ok || got != filepath.Join(mount, "user.slice") {
		t.Errorf("got %q, %v; want the slice", got, ok)
	}
	if got, ok := v2PidsParent(mount, "/user.slice"); !ok || got != filepath.Join(mount, "user.slice") {
		t.Errorf("got %q, %v; want the own cgroup", got, ok)
	}
	ctl("", "cpu\n")
	ctl("user.slice", "memory\n")
	if got, ok := v2PidsParent(mount, "/user.slice/session-1.scope"); ok {
		t.Errorf("got %q; want none: no cgroup hands out pids", got)
	}
}
