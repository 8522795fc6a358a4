// Package openstacktest runs a real Keystone and Glance, from Debian's
// packages, for tests: on free 127.0.0.1 ports, with sqlite databases
// and Glance's file store in a private directory, and a clouds.yaml with
// password authentication selected by OS_CLOUD, as users run them.
//
// What makes them reliable on a small shared machine: Keystone under
// uwsgi with one process and one thread, --die-on-term (uwsgi otherwise
// takes SIGTERM as a reload) and Connection: close on its responses
// (reused connections were reset now and then); sqlite in WAL mode with
// a long busy timeout; keystone-manage bootstrap before the server
// starts. Glance runs its own server (one worker) with the keystone
// paste flavor (keystonemiddleware). Nothing of the packages' own
// configuration in /etc is used.
//
// Starting takes 10 to 30 seconds, so a test package starts one pair for
// all its tests: Shared starts it on first use and Main stops it.
package openstacktest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fgimg/fgimg/internal/hosttool"
	"github.com/fgimg/fgimg/internal/testkit"
	"github.com/gophercloud/gophercloud/v2"
	gopenstack "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/endpoints"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/services"
)

// Tools are the host programs a Server needs.
var Tools = []string{"keystone-manage", "glance-api", "glance-manage", "uwsgi-core", "python3"}

// CloudName is the clouds.yaml entry of a Server's cloud.
const CloudName = "fgimg-test"

// Server is a running Keystone and Glance.
type Server struct {
	Dir         string // their files: configuration, databases, images, logs
	CloudsYAML  string // a clouds.yaml with CloudName
	Password    string // the admin's password, for tests that check it never shows
	KeystoneURL string // http://127.0.0.1:PORT/v3
	GlanceURL   string // http://127.0.0.1:PORT
	// ImageDir is Glance's file store.
	ImageDir string
	procs    []proc
}

// proc is a running server; exited is closed once it has been reaped.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts Keystone and Glance with their files in dir.
func Start(ctx context.Context, dir string) (s *Server, err error) {
	s = &Server{Dir: dir, Password: "pw-" + strconv.FormatInt(time.Now().UnixNano(), 36), ImageDir: filepath.Join(dir, "images")}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	kport, gport, err := freePort(), freePort(), nil
	s.KeystoneURL = fmt.Sprintf("http://127.0.0.1:%d/v3", kport)
	s.GlanceURL = fmt.Sprintf("http://127.0.0.1:%d", gport)
	for _, d := range []string{"images", "lock", "fernet-keys", "fernet-receipts", "credential-keys"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	files := map[string]string{
		"keystone.conf":        fmt.Sprintf(keystoneConf, dir),
		"glance-api.conf":      fmt.Sprintf(glanceConf, gport, dir, s.KeystoneURL, s.Password),
		"glance-api-paste.ini": glancePaste,
		"clouds.yaml":          fmt.Sprintf(cloudsYAML, CloudName, s.KeystoneURL, s.Password),
		"sqlite-wal.py":        sqliteWAL,
		"keystone-uwsgi.ini":   fmt.Sprintf(keystoneUWSGI, kport),
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			return nil, err
		}
	}
	s.CloudsYAML = filepath.Join(dir, "clouds.yaml")
	kconf, gconf := filepath.Join(dir, "keystone.conf"), filepath.Join(dir, "glance-api.conf")
	wal := func(db string) []string {
		return []string{"python3", filepath.Join(dir, "sqlite-wal.py"), filepath.Join(dir, db)}
	}
	// Three independent chains of setup commands, at once: each is
	// mostly a Python interpreter starting.
	chains := [][][]string{
		{
			{"keystone-manage", "--config-file", kconf, "db_sync"},
			wal("keystone.db"),
			{"keystone-manage", "--config-file", kconf, "bootstrap", "--bootstrap-password", s.Password,
				"--bootstrap-admin-url", s.KeystoneURL, "--bootstrap-public-url", s.KeystoneURL,
				"--bootstrap-internal-url", s.KeystoneURL, "--bootstrap-region-id", "RegionOne"},
		},
		{
			{"keystone-manage", "--config-file", kconf, "fernet_setup", "--keystone-user", user(), "--keystone-group", group()},
			{"keystone-manage", "--config-file", kconf, "credential_setup", "--keystone-user", user(), "--keystone-group", group()},
		},
		{
			{"glance-manage", "--config-file", gconf, "db_sync"},
			wal("glance.db"),
		},
	}
	errs := make([]error, len(chains))
	var wg sync.WaitGroup
	for i, chain := range chains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, argv := range chain {
				if errs[i] = s.run(ctx, argv); errs[i] != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := s.start("keystone", []string{"uwsgi-core", "--ini", filepath.Join(dir, "keystone-uwsgi.ini")},
		"OS_KEYSTONE_CONFIG_FILES="+kconf); err != nil {
		return nil, err
	}
	// Glance starts beside Keystone: it asks Keystone only when a
	// request comes.
	if err := s.start("glance", []string{"glance-api", "--config-file", gconf}); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, s.KeystoneURL, s.procs[0]); err != nil {
		return nil, fmt.Errorf("keystone: %w (log: %s)", err, filepath.Join(dir, "keystone.log"))
	}
	if err := s.catalog(ctx); err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, s.GlanceURL+"/versions", s.procs[1]); err != nil {
		return nil, fmt.Errorf("glance: %w (log: %s)", err, filepath.Join(dir, "glance.log"))
	}
	return s, nil
}

// Env is the environment that selects the Server's cloud the way users
// select theirs: OS_CLIENT_CONFIG_FILE and OS_CLOUD, with any other OS_*
// variable cleared.
func (s *Server) Env() map[string]string {
	env := map[string]string{"OS_CLIENT_CONFIG_FILE": s.CloudsYAML, "OS_CLOUD": CloudName}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OS_") {
			if _, ok := env[k]; !ok {
				env[k] = ""
			}
		}
	}
	return env
}

// Setenv selects the Server's cloud for the rest of the test.
func (s *Server) Setenv(t testing.TB) {
	for k, v := range s.Env() {
		t.Setenv(k, v)
	}
}

// Stop stops Glance and Keystone.
func (s *Server) Stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
		// Whatever the server left in its group (a worker) goes too.
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	s.procs = nil
}

func (s *Server) run(ctx context.Context, argv []string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = s.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", argv[0], argv[len(argv)-1], err, tail(out))
	}
	return nil
}

// start starts a server in its own process group, its output in
// DIR/NAME.log; it dies with the test process (hosttool.Start's parent
// death signal).
func (s *Server) start(name string, argv []string, env ...string) error {
	log, err := os.Create(filepath.Join(s.Dir, name+".log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	waited, err := hosttool.Start(cmd)
	if err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := proc{cmd: cmd, exited: make(chan struct{})}
	go func() { <-waited; close(p.exited) }()
	s.procs = append(s.procs, p)
	return nil
}

// catalog registers Glance as the image service, as an operator does
// with `openstack service create` and `openstack endpoint create`.
func (s *Server) catalog(ctx context.Context) error {
	provider, err := gopenstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{
		IdentityEndpoint: s.KeystoneURL, Username: "admin", Password: s.Password, DomainName: "Default",
		Scope: &gophercloud.AuthScope{ProjectName: "admin", DomainName: "Default"},
	})
	if err != nil {
		return fmt.Errorf("keystone: authenticating as admin: %w", err)
	}
	id, err := gopenstack.NewIdentityV3(provider, gophercloud.EndpointOpts{})
	if err != nil {
		return err
	}
	svc, err := services.Create(ctx, id, services.CreateOpts{Type: "image", Extra: map[string]any{"name": "glance"}}).Extract()
	if err != nil {
		return fmt.Errorf("keystone: adding the image service: %w", err)
	}
	_, err = endpoints.Create(ctx, id, endpoints.CreateOpts{
		Availability: gophercloud.AvailabilityPublic, Region: "RegionOne", URL: s.GlanceURL, ServiceID: svc.ID,
	}).Extract()
	if err != nil {
		return fmt.Errorf("keystone: adding Glance's endpoint: %w", err)
	}
	return nil
}

func waitHTTP(ctx context.Context, url string, p proc) error {
	exited := p.exited
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			return errors.New("the server exited")
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer in 2 minutes", url)
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func user() string  { return strconv.Itoa(os.Getuid()) }
func group() string { return strconv.Itoa(os.Getgid()) }

func tail(b []byte) []byte {
	if len(b) > 4000 {
		return b[len(b)-4000:]
	}
	return b
}

var (
	shared    *Server
	sharedErr error
	once      sync.Once
	sharedDir string
)

// Shared returns the test package's Server, starting it on first use.
// The test fails (never skips in CI) when the packages are missing.
func Shared(t testing.TB) *Server {
	t.Helper()
	testkit.Need(t, Tools...)
	once.Do(func() {
		sharedDir, sharedErr = os.MkdirTemp("", "fgimg-openstack-")
		if sharedErr == nil {
			shared, sharedErr = Start(context.Background(), sharedDir)
		}
	})
	if sharedErr != nil {
		t.Fatalf("starting Keystone and Glance: %v", sharedErr)
	}
	return shared
}

// Main runs a test package's tests (TestMain calls it) and then stops
// the shared Server and removes its files.
func Main(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	return code
}
