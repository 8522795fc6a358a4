package vet

import (
	"fmt"
	"strings"
)

// Boot is what a boot in isolation showed: the image booted in QEMU
// with no network device, on a throwaway overlay of its disk.
type Boot struct {
	// Login says the login prompt was reached.
	Login bool `json:"login"`
	// Seconds is the time to the login prompt; ProbeSeconds the probe's
	// own time after it.
	Seconds      float64  `json:"seconds"`
	ProbeSeconds float64  `json:"probe_seconds"`
	Listening    []Socket `json:"listening"`
	FailedUnits  []string `json:"failed_units"`
	// Log is the tail of the console when the login prompt was not reached.
	Log string `json:"log,omitempty"`
}

// Socket is one listening socket.
type Socket struct {
	Proto   string `json:"proto"` // tcp, tcp6, udp, udp6
	Address string `json:"address"`
	Process string `json:"process,omitempty"`
}

func (s Socket) String() string {
	p := s.Process
	if p == "" {
		p = "?"
	}
	return s.Proto + " " + s.Address + " " + p
}

// Findings are the boot's findings: no login prompt, each listening
// socket (for information: whether a service should listen is the
// operator's call, a policy's block_ids makes it block) and each failed
// unit.
func (b *Boot) Findings() []Finding {
	var out []Finding
	if !b.Login {
		out = append(out, Finding{ID: IDBootNoLogin, Severity: High,
			Detail: "the image did not reach its login prompt when booted without a network",
			Fix:    "boot it (fgimg boot TARGET) and read the console: a service waiting for the network must not block the boot"})
	}
	for _, s := range b.Listening {
		loopback := strings.HasPrefix(s.Address, "127.") || strings.HasPrefix(s.Address, "[::1]")
		sev := Info
		if !loopback {
			sev = Low
		}
		out = append(out, Finding{ID: IDBootListening, Severity: sev, Package: s.Process, Path: s.Proto + " " + s.Address,
			Detail: fmt.Sprintf("%s listens on %s %s", orUnknown(s.Process), s.Proto, s.Address),
			Fix:    "disable the service if the image does not need it (a service block with enabled = false), or bind it to localhost"})
	}
	for _, u := range b.FailedUnits {
		out = append(out, Finding{ID: IDBootFailedUnit, Severity: Medium, Path: u,
			Detail: u + " failed during the boot",
			Fix:    "fix or disable it (a service block with enabled = false); journalctl -u " + u + " in fgimg boot shows why"})
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "a process"
	}
	return s
}
