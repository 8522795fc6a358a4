// Package s3test starts a real S3 server for tests: versitygw (Versity's
// S3 gateway, which checks SigV4 signatures) on 127.0.0.1 with a POSIX
// back end in a temporary directory. `make deps` installs versitygw with
// go install; a test without it skips, or fails under
// FGIMG_TEST_REQUIRE_TOOLS as with any missing tool.
package s3test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/fgimg/fgimg/internal/s3client"
	"github.com/fgimg/fgimg/internal/testkit"
)

// Module is what `make deps` installs (keep the two in step).
const Module = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// Server is a running versitygw.
type Server struct {
	Endpoint             string // http://127.0.0.1:PORT
	AccessKey, SecretKey string
	Region               string
	// Dir is the POSIX back end: Dir/BUCKET/KEY are the objects' bytes,
	// for tests that corrupt or inspect them.
	Dir string
	cmd *exec.Cmd
}

// Binary finds versitygw on PATH or in Go's bin directory, or ends the
// test as a missing tool does.
func Binary(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	if p := filepath.Join(gopath, "bin", "versitygw"); gopath != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	testkit.Missing(tb, fmt.Errorf("versitygw (an S3 server) is not installed: go install %s", Module))
	return ""
}

// Start starts a server that stops when the test ends.
func Start(tb testing.TB) *Server {
	tb.Helper()
	bin := Binary(tb)
	s := &Server{AccessKey: "fgimgtestaccess", SecretKey: "fgimgtestsecret0123456789", Region: "us-east-1",
		Dir: filepath.Join(tb.TempDir(), "s3")}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		tb.Fatal(err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		logf, err := os.Create(filepath.Join(tb.TempDir(), "versitygw.log"))
		if err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command(bin, "--port", addr, "--access", s.AccessKey, "--secret", s.SecretKey,
			"--region", s.Region, "--quiet", "posix", s.Dir)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		s.Endpoint, s.cmd = "http://"+addr, cmd
		if lastErr = waitUp(addr, cmd); lastErr == nil {
			tb.Cleanup(s.Stop)
			return s
		}
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
		out, _ := os.ReadFile(logf.Name())
		lastErr = fmt.Errorf("%v: %s", lastErr, strings.TrimSpace(string(out)))
	}
	tb.Fatalf("versitygw did not start: %v", lastErr)
	return nil
}

// Stop kills the server (tests of a server going away call it early).
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// Config is an s3client.Config for this server.
func (s *Server) Config() s3client.Config {
	return s3client.Config{Endpoint: s.Endpoint, Region: s.Region, AccessKey: s.AccessKey, SecretKey: s.SecretKey}
}

// Env is the environment the AWS SDK's chain reads, for running fgimg
// (or aws, s3cmd) against this server as a user would.
func (s *Server) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region, "AWS_ENDPOINT_URL_S3=" + s.Endpoint}
}

// Client connects to the server.
func (s *Server) Client(tb testing.TB) *s3client.Client {
	tb.Helper()
	c, err := s3client.New(context.Background(), s.Config())
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// MakeBucket creates a bucket.
func (s *Server) MakeBucket(tb testing.TB, name string) {
	tb.Helper()
	_, err := s.Client(tb).S3().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: &name})
	if err != nil {
		tb.Fatalf("creating bucket %s: %v", name, err)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitUp waits until addr answers HTTP (any status: unauthenticated
// requests get 403) or the process exits.
func waitUp(addr string, cmd *exec.Cmd) error {
	exited := make(chan struct{})
	go func() { cmd.Process.Wait(); close(exited) }()
	deadline := time.Now().Add(15 * time.Second)
	cl := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("versitygw exited")
		default:
		}
		if resp, err := cl.Get("http://" + addr + "/"); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("versitygw not answering on %s after 15 s", addr)
}
