package registrytest

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP connections to a registry until Limit bytes have
// passed through it (both ways together); then it drops every
// connection and refuses new ones, as a registry that stops in the
// middle of a transfer.
type Proxy struct {
	// Addr is 127.0.0.1:PORT, to use instead of the registry's.
	Addr string

	limit  int64
	passed atomic.Int64
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	cut    bool
}

// CutAfter starts a proxy to r that fails after limit bytes.
func (r *Registry) CutAfter(tb testing.TB, limit int64) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), limit: limit, ln: ln}
	go p.serve(r.Addr)
	tb.Cleanup(p.Cut)
	return p
}

// Cut drops every connection and stops listening.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return
	}
	p.cut = true
	p.ln.Close()
	for _, c := range p.conns {
		c.Close()
	}
}

// Passed is how many bytes went through.
func (p *Proxy) Passed() int64 { return p.passed.Load() }

// WasCut says whether the limit was reached.
func (p *Proxy) WasCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

func (p *Proxy) serve(upstream string) {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", upstream)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			u.Close()
			return
		}
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		go p.pipe(c, u)
		go p.pipe(u, c)
	}
}

func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if p.passed.Add(int64(n)) > p.limit {
				p.Cut()
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}
