package sandbox

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fgimg/fgimg/internal/hosttool"
)

// loopbackUp brings up lo in the init's network namespace: commands may
// talk to services they start themselves, never to the host's.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up lo: %w", err)
	}
	return nil
}

// pastaArgs connect the network namespace of the process pid to the
// outside through pasta's user-mode network stack, outbound only: no
// port of the host's is forwarded into the namespace or from it
// (-t/-u/-T/-U none), and the gateway address is not mapped to the
// host's loopback (--no-map-gw), so the host's local services stay out
// of reach. pasta stays in the foreground, fgimg's child, and writes
// pidFile once the namespace is configured.
//
// The namespaces are passed as open files: the user namespace as fd 3
// and the network namespace as fd 4, or, when pasta already runs in the
// command's user namespace (inUserNS), the network namespace alone as fd
// 3. pasta stays the user it starts as (--runas 0:0): as nobody it could
// not join the namespaces.
//
// With dnsForward, UDP port 53 of dnsForwardAddr is mapped to the host's
// first name server, which then is on the host's loopback.
func pastaArgs(pidFile string, dnsForward, inUserNS bool) []string {
	args := []string{
		"--config-net", "--quiet", "--foreground",
		"-t", "none", "-u", "none", "-T", "none", "-U", "none",
		"--no-map-gw", "--runas", "0:0",
		"--pid", pidFile,
	}
	if inUserNS {
		args = append(args, "--netns", "/proc/self/fd/3", "--netns-only")
	} else {
		args = append(args, "--userns", "/proc/self/fd/3", "--netns", "/proc/self/fd/4")
	}
	if dnsForward {
		args = append(args, "--dns-forward", dnsForwardAddr)
	}
	return args
}

// dnsForwardAddr is the name server address commands use when the host's
// name servers are on its loopback (systemd-resolved's 127.0.0.53), as
// podman has it.
const dnsForwardAddr = "169.254.1.1"

// loopbackResolverRewrite returns, when every name server of the host's
// resolv.conf (hostFile) is a loopback address, unreachable from the command's
// network namespace, the path of a temporary copy naming dnsForwardAddr
// instead (the caller removes it), and dnsForward true. Otherwise it
// returns "" and false: the host's file serves as it is.
func loopbackResolverRewrite(hostFile string) (path string, dnsForward bool, err error) {
	b, err := os.ReadFile(hostFile)
	if err != nil {
		return "", false, nil
	}
	var lines []string
	servers, loopback := 0, 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "nameserver" {
			servers++
			if ip := net.ParseIP(f[1]); ip != nil && ip.IsLoopback() {
				loopback++
				if loopback > 1 {
					continue // one forwarded server is enough
				}
				l = "nameserver " + dnsForwardAddr
			}
		}
		lines = append(lines, l)
	}
	if servers == 0 || loopback < servers {
		return "", false, nil
	}
	f, err := os.CreateTemp("", "fgimg-resolv-")
	if err != nil {
		return "", false, err
	}
	_, err = f.WriteString(strings.Join(lines, "\n"))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o644)
	}
	if err != nil {
		os.Remove(f.Name())
		return "", false, err
	}
	return f.Name(), true, nil
}

// pastaStartTimeout bounds pasta's start-up.
const pastaStartTimeout = 30 * time.Second

// startNetwork gives the network namespace of the process pid outbound
// access through pasta (Debian's passt package) and returns the function
// that stops it. With shifted ids (shifted non-nil) pasta runs in the
// command's user namespace, entered with nsenter, as its root: on the host
// it is then the unprivileged user the image's root is, as with rootless
// podman, instead of root.
func startNetwork(pid int, dnsForward bool, shifted *idMaps) (stop func(), err error) {
	pasta, err := hosttool.Find("pasta")
	if err != nil {
		return nil, fmt.Errorf("build commands that use the network run it through pasta: %w", err)
	}
	dir, err := os.MkdirTemp("", "fgimg-pasta-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	pidFile := filepath.Join(dir, "pid")
	namespaces := []string{"user", "net"}
	name, args := pasta, pastaArgs(pidFile, dnsForward, shifted != nil)
	if shifted != nil {
		nsenter, err := hosttool.Find("nsenter")
		if err != nil {
			return nil, fmt.Errorf("build commands that use the network run pasta through nsenter: %w", err)
		}
		// pasta writes its pid file as the shifted root.
		if err := os.Chown(dir, shifted.uids[0].HostID, shifted.gids[0].HostID); err != nil {
			return nil, err
		}
		namespaces = []string{"net"}
		name, args = nsenter, append([]string{fmt.Sprintf("--user=/proc/%d/ns/user", pid), "--", pasta}, args...)
	}
	var nsFiles []*os.File
	for _, ns := range namespaces {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		nsFiles = append(nsFiles, f)
	}
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.ExtraFiles = nsFiles
	cmd.Env = []string{}
	cmd.Stdout, cmd.Stderr = &out, &out
	exited, err := hosttool.Start(cmd)
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.After(pastaStartTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			msg := strings.TrimSpace(out.String())
			if msg == "" {
				msg = fmt.Sprint(err)
			}
			return nil, fmt.Errorf("pasta could not set up the network: %s", msg)
		case <-deadline:
			stop()
			return nil, fmt.Errorf("pasta did not set up the network within %s", pastaStartTimeout)
		case <-tick.C:
			if b, err := os.ReadFile(pidFile); err == nil && len(b) > 0 {
				return stop, nil
			}
		}
	}
}
