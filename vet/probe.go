package vet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/fgimg/fgimg/internal/cpio"
	"github.com/fgimg/fgimg/internal/qemu"
)

// probeUnit runs the probe once the boot is done (after multi-user,
// the job queue empty), on the console the boot watches. It is only on
// the throwaway initramfs of the probe's boot, never in the artifact.
const probeUnit = `[Unit]
Description=fgimg vet probe (this boot only)
After=multi-user.target

[Service]
Type=simple
ExecStart=/bin/sh /fgimg-vet-probe
StandardOutput=tty
StandardError=journal
TTYPath=/dev/console

[Install]
WantedBy=multi-user.target
`

// probeScript waits for the serial getty (the login prompt) and the end
// of the boot, then prints, as lines "fgv ...": every TCP and UDP socket (/proc/net), which process holds each
// socket, the failed units, and its own start and end (uptime). Two
// processes in all (find for the descriptors, systemctl for the units):
// the rest is the shell's builtins.
const probeScript = `i=0
getty=inactive
while [ $i -lt 300 ]; do
  systemctl -q is-active serial-getty@ttyS0.service && getty=active && break
  sleep 0.2; i=$((i+1))
done
systemctl is-system-running --wait >/dev/null 2>&1
read up _ < /proc/uptime; echo "fgv begin $up"
echo "fgv getty $getty"
for f in tcp tcp6 udp udp6; do
  [ -r /proc/net/$f ] || continue
  while read -r sl local rem st rest; do
    [ "$sl" = sl ] && continue
    set -- $rest
    echo "fgv sock $f $local $st $6"
  done < /proc/net/$f
done
for p in /proc/[0-9]*; do read -r c < $p/comm 2>/dev/null && echo "fgv comm ${p#/proc/} $c"; done
find /proc/[0-9]*/fd -lname 'socket:*' -printf 'fgv fd %h %l\n' 2>/dev/null
systemctl list-units --failed --plain --no-legend --no-pager | while read -r u _; do echo "fgv failed $u"; done
read up _ < /proc/uptime; echo "fgv end $up"
echo "FGIMG-VET-$((1+1))END"
`

// probeDone is what the probe prints last: "FGIMG-VET-2END", which the
// script spells as arithmetic so that nothing echoing the script's text
// can say it early.
const probeDone = "FGIMG-VET-2END"

// BootNetboot boots a netboot target (o.Kernel, o.Initrd) in QEMU with no
// network device, the probe added in a cpio archive appended to a copy
// of the initramfs in tmp (the artifact is never changed), and returns
// what the probe saw once the image was up.
func BootNetboot(ctx context.Context, o qemu.Options, tmp string) (*Boot, error) {
	if o.Kernel == "" || o.Initrd == "" {
		return nil, errors.New("the boot in isolation boots netboot targets (a kernel and an initramfs); for disks it is not available yet")
	}
	initrd := filepath.Join(tmp, "initramfs-probe")
	if err := probeInitrd(o.Initrd, initrd); err != nil {
		return nil, err
	}
	defer os.Remove(initrd)
	o.Initrd, o.NoNetwork, o.Expect = initrd, true, []string{probeDone}
	var console syncBuffer
	if o.Console != nil {
		o.Console = io.MultiWriter(o.Console, &console)
	} else {
		o.Console = &console
	}
	res, err := qemu.Boot(ctx, o)
	b := parseProbe(console.String())
	if err != nil {
		if res.Outcome == "" || ctx.Err() != nil {
			return nil, err
		}
		b.Login = false
		b.Log = strings.Join(res.Tail, "\n")
		b.Seconds = res.Elapsed.Seconds()
		return b, nil
	}
	b.Seconds = res.Elapsed.Seconds() - b.ProbeSeconds
	return b, nil
}

// probeInitrd writes dst: src, then a cpio archive with the probe.
func probeInitrd(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	n, err := io.Copy(out, in)
	if err == nil && n%4 != 0 {
		_, err = out.Write(make([]byte, 4-n%4)) // the kernel reads each archive from a 4-byte boundary
	}
	if err == nil {
		w := cpio.NewWriter(out)
		for _, d := range []string{"etc", "etc/systemd", "etc/systemd/system", "etc/systemd/system/multi-user.target.wants"} {
			if err = w.WriteHeader(&cpio.Header{Name: d, Mode: cpio.TypeDir | 0o755, Nlink: 2}); err != nil {
				break
			}
		}
		file := func(name, body string, mode uint32) {
			if err == nil {
				err = w.WriteHeader(&cpio.Header{Name: name, Mode: cpio.TypeReg | mode, Nlink: 1, Size: int64(len(body))})
			}
			if err == nil {
				_, err = io.WriteString(w, body)
			}
		}
		file("etc/systemd/system/fgimg-vet-probe.service", probeUnit, 0o644)
		file("fgimg-vet-probe", probeScript, 0o755)
		if err == nil {
			err = w.WriteHeader(&cpio.Header{Name: "etc/systemd/system/multi-user.target.wants/fgimg-vet-probe.service",
				Mode: cpio.TypeSymlink | 0o777, Nlink: 1, Linkname: "/etc/systemd/system/fgimg-vet-probe.service"})
		}
		if err == nil {
			err = w.Close()
		}
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("adding the probe to the initramfs: %w", err)
	}
	return nil
}

// parseProbe reads the probe's lines from the console.
func parseProbe(console string) *Boot {
	b := &Boot{Listening: []Socket{}, FailedUnits: []string{}}
	type sock struct{ proto, addr, inode string }
	var socks []sock
	comm := map[string]string{}
	owner := map[string]string{} // socket inode → "comm[pid]"
	var begin, end float64
	sc := bufio.NewScanner(strings.NewReader(console))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.Contains(line, " login:") {
			b.Login = true
		}
		i := strings.Index(line, "fgv ")
		if i < 0 {
			continue
		}
		f := strings.Fields(line[i+4:])
		if len(f) == 0 {
			continue
		}
		switch {
		case f[0] == "begin" && len(f) == 2:
			begin, _ = strconv.ParseFloat(f[1], 64)
		case f[0] == "end" && len(f) == 2:
			end, _ = strconv.ParseFloat(f[1], 64)
		case f[0] == "getty" && len(f) == 2:
			b.Login = b.Login || f[1] == "active"
		case f[0] == "sock" && len(f) == 5:
			// Listening: a TCP socket in state LISTEN (0A), a UDP one
			// unconnected (07).
			if (strings.HasPrefix(f[1], "tcp") && f[3] == "0A") || (strings.HasPrefix(f[1], "udp") && f[3] == "07") {
				if addr, ok := procAddr(f[2]); ok {
					socks = append(socks, sock{f[1], addr, f[4]})
				}
			}
		case f[0] == "comm" && len(f) >= 3:
			comm[f[1]] = strings.Join(f[2:], " ")
		case f[0] == "fd" && len(f) == 3:
			pid := strings.TrimSuffix(strings.TrimPrefix(f[1], "/proc/"), "/fd")
			inode := strings.TrimSuffix(strings.TrimPrefix(f[2], "socket:["), "]")
			if _, ok := owner[inode]; !ok {
				owner[inode] = pid
			}
		case f[0] == "failed" && len(f) == 2:
			b.FailedUnits = append(b.FailedUnits, f[1])
		}
	}
	for _, s := range socks {
		proc := ""
		if pid, ok := owner[s.inode]; ok {
			proc = comm[pid]
		}
		b.Listening = append(b.Listening, Socket{Proto: s.proto, Address: s.addr, Process: proc})
	}
	sort.Slice(b.Listening, func(i, j int) bool { return b.Listening[i].String() < b.Listening[j].String() })
	if end > begin {
		b.ProbeSeconds = end - begin
	}
	return b
}

// procAddr reads /proc/net's "0100007F:0016" (the address in the
// kernel's byte order, 32 bits at a time) as "127.0.0.1:22".
func procAddr(s string) (string, bool) {
	h, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	raw, herr := hex.DecodeString(h)
	if !ok || err != nil || herr != nil || (len(raw) != 4 && len(raw) != 16) {
		return "", false
	}
	ip := make(net.IP, len(raw))
	for i := 0; i < len(raw); i += 4 {
		ip[i], ip[i+1], ip[i+2], ip[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(int(port))), true
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
