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
// The namespaces are passed as open files (fds 3 and 4): pasta started as
// root changes to nobody before joining them, and nobody may not open
// another user's /proc/PID/ns files.
//
// With dnsForward, UDP port 53 of dnsForwardAddr is mapped to the host's
// first name server, which then is on the host's loopback.
func pastaArgs(pidFile string, dnsForward bool) []string {
	args := []string{
		"--config-net", "--quiet", "--foreground",
		"-t", "none", "-u", "none", "-T", "none", "-U", "none",
		"--no-map-gw", "--runas", "0:0",
		"--pid", pidFile,
		"--userns", "/proc/self/fd/3", "--netns", "/proc/self/fd/4",
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
// that stops it.
func startNetwork(pid int, dnsForward bool) (stop func(), err error) {
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
	var nsFiles []*os.File
	for _, ns := range []string{"user", "net"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, ns))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		nsFiles = append(nsFiles, f)
	}
	var out bytes.Buffer
	cmd := exec.Command(pasta, pastaArgs(pidFile, dnsForward)...)
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
