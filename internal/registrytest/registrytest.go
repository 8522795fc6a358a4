// Package registrytest runs Debian's docker-registry (distribution 2.8)
// on 127.0.0.1 for tests: a real OCI registry, with or without htpasswd
// authentication, that a test may stop, restart, corrupt on disk and
// garbage-collect.
package registrytest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/opencontainers/go-digest"
	"golang.org/x/crypto/bcrypt"
)

// Registry is a running docker-registry.
type Registry struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// Dir is the storage root directory.
	Dir string
	// Config is the registry's configuration file.
	Config string
	// User and Password are the one account, when started with auth.
	User, Password string

	bin      string
	cmd      *exec.Cmd
	original map[digest.Digest][]byte // blobs before Corrupt
	log      *testkit.SyncBuffer
	tb       testing.TB
}

// Options say how to start a registry.
type Options struct {
	// Auth: htpasswd authentication with one account.
	Auth bool
}

// Start starts a registry that stops when the test ends.
func Start(tb testing.TB, opts Options) *Registry {
	tb.Helper()
	bin := testkit.Need(tb, "docker-registry")[0]
	dir := tb.TempDir()
	r := &Registry{Dir: filepath.Join(dir, "storage"), Config: filepath.Join(dir, "config.yml"), bin: bin, tb: tb, log: &testkit.SyncBuffer{}}
	r.Addr = freeAddr(tb)
	auth := ""
	if opts.Auth {
		r.User, r.Password = "ci", "s3cret-"+strings.Repeat("x", 8)
		hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
		if err != nil {
			tb.Fatal(err)
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(r.User+":"+string(hash)+"\n"), 0o600); err != nil {
			tb.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: fgimg-test\n    path: %s\n", htpasswd)
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
%s`, r.Dir, r.Addr, auth)
	if err := os.WriteFile(r.Config, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	r.Start()
	tb.Cleanup(r.Stop)
	return r
}

// freeAddr returns a 127.0.0.1 address with a port free a moment ago.
func freeAddr(tb testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start (re)starts the registry and waits until it answers.
func (r *Registry) Start() {
	r.tb.Helper()
	if r.cmd != nil {
		return
	}
	cmd := exec.Command(r.bin, "serve", r.Config)
	cmd.Stdout, cmd.Stderr = r.log, r.log
	// The registry dies with the test process, however that ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.tb.Fatalf("starting docker-registry: %v", err)
	}
	r.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + r.Addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.Stop()
	r.tb.Fatalf("docker-registry did not answer on %s: %s", r.Addr, r.log.String())
}

// Stop kills the registry (as a crash would) and waits for it.
func (r *Registry) Stop() {
	if r.cmd == nil {
		return
	}
	r.cmd.Process.Kill()
	r.cmd.Wait()
	r.cmd = nil
}

// GC runs the registry's garbage collector with --delete-untagged (with
// the registry stopped, as distribution requires, and started again
// after) and returns its output.
func (r *Registry) GC() string {
	r.tb.Helper()
	r.Stop()
	out, err := exec.Command(r.bin, "garbage-collect", "--delete-untagged", r.Config).CombinedOutput()
	if err != nil {
		r.tb.Fatalf("docker-registry garbage-collect: %v\n%s", err, out)
	}
	r.Start()
	return string(out)
}

// BlobPath is where the registry keeps blob d on disk.
func (r *Registry) BlobPath(d digest.Digest) string {
	hex := d.Encoded()
	return filepath.Join(r.Dir, "docker", "registry", "v2", "blobs", d.Algorithm().String(), hex[:2], hex, "data")
}

// Corrupt flips a byte in the middle of blob d on the registry's disk.
func (r *Registry) Corrupt(d digest.Digest) {
	r.tb.Helper()
	p := r.BlobPath(d)
	b, err := os.ReadFile(p)
	if err != nil {
		r.tb.Fatal(err)
	}
	if r.original == nil {
		r.original = map[digest.Digest][]byte{}
	}
	r.original[d] = slices.Clone(b)
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o644); err != nil {
		r.tb.Fatal(err)
	}
}

// Restore undoes Corrupt.
func (r *Registry) Restore(d digest.Digest) {
	r.tb.Helper()
	if err := os.WriteFile(r.BlobPath(d), r.original[d], 0o644); err != nil {
		r.tb.Fatal(err)
	}
}

// DockerConfig writes a docker config.json holding the registry's
// account (or the given password instead) in dir and returns dir, for
// DOCKER_CONFIG.
func (r *Registry) DockerConfig(dir, password string) string {
	r.tb.Helper()
	return r.dockerConfig(dir, r.Addr, password)
}

// DockerConfigFor writes a docker config.json with the registry's
// account for another address (a Proxy's) in dir and returns dir.
func (r *Registry) DockerConfigFor(dir, addr string) string {
	r.tb.Helper()
	return r.dockerConfig(dir, addr, r.Password)
}

func (r *Registry) dockerConfig(dir, addr, password string) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"auths":{%q:{"auth":%q}}}`, addr, basic(r.User, password))
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b.Bytes(), 0o600); err != nil {
		r.tb.Fatal(err)
	}
	return dir
}

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// Log is what the registry printed.
func (r *Registry) Log() string { return r.log.String() }
