package cache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

// Tests that need a second process re-execute the test binary with
// helperEnv set (the os/exec helper-process pattern); TestMain then runs
// the helper instead of the tests.
const (
	helperEnv       = "FGIMG_CACHE_TEST_HELPER"
	helperDirEnv    = "FGIMG_CACHE_TEST_DIR"
	helperDigestEnv = "FGIMG_CACHE_TEST_DIGEST"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode, os.Getenv(helperDirEnv), digest.Digest(os.Getenv(helperDigestEnv))); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runHelper(mode, dir string, stage digest.Digest) error {
	s, err := Open(dir)
	if err != nil {
		return err
	}
	defer s.Close()
	switch mode {
	case "write-forever":
		// Write a blob that never ends; say so once well under way.
		w, err := s.NewBlob()
		if err != nil {
			return err
		}
		buf := make([]byte, 64<<10)
		for w.Size() < 2<<30 { // a bound, in case nobody kills us
			rand.Read(buf)
			if _, err := w.Write(buf); err != nil {
				return err
			}
			if w.Size() == 4<<20 {
				fmt.Println("writing")
			}
		}
		return fmt.Errorf("was not killed")

	case "build-loop":
		// Build stages one after another until killed.
		for i := 0; ; i++ {
			data := make([]byte, 1<<10+i%7*(64<<10))
			rand.Read(data)
			if _, err := buildStage(s, digest.FromBytes(data), data); err != nil {
				return err
			}
			fmt.Println(i)
		}

	case "lock-hold":
		// Lock the stage, say so, build it when told to on stdin.
		unlock, err := s.Lock(context.Background(), stage)
		if err != nil {
			return err
		}
		defer unlock()
		fmt.Println("locked")
		if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
			return err
		}
		_, err = buildStage(s, stage, []byte("built by helper"))
		return err
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

// helper is a running helper process.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	stderr *bytes.Buffer
}

func startHelper(t *testing.T, mode, dir string, stage digest.Digest) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDirEnv+"="+dir, helperDigestEnv+"="+string(stage))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	h := &helper{cmd: cmd, stderr: new(bytes.Buffer)}
	cmd.Stderr = h.stderr
	var err error
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.stdout = bufio.NewReader(out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return h
}

// expect waits for the helper to print line.
func (h *helper) expect(t *testing.T, line string) {
	t.Helper()
	got, err := h.stdout.ReadString('\n')
	if err != nil || strings.TrimSpace(got) != line {
		t.Fatalf("helper said %q (%v), want %q; stderr: %s", got, err, line, h.stderr)
	}
}

// kill9 kills the helper with SIGKILL and reaps it.
func (h *helper) kill9(t *testing.T) {
	t.Helper()
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := h.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("helper ended with %v, not SIGKILL; stderr: %s", err, h.stderr)
	}
}

// buildStage is what a builder does for one stage: store a layer and a
// log, then the record.
func buildStage(s *Store, stage digest.Digest, layer []byte) (Record, error) {
	l, err := s.PutBlob(bytes.NewReader(layer))
	if err != nil {
		return Record{}, err
	}
	log, err := s.PutBlob(strings.NewReader("log of " + string(stage)))
	if err != nil {
		return Record{}, err
	}
	rec := Record{
		Digest:   stage,
		Kind:     "run",
		Outputs:  []Output{{Name: "layer", Digest: l.Digest, Size: l.Size, MediaType: "application/vnd.oci.image.layer.v1.tar"}},
		Duration: time.Second,
		Log:      log.Digest,
	}
	return rec, s.PutRecord(rec)
}

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// stageDigest makes up a stage digest.
func stageDigest(name string) digest.Digest { return digest.FromString("stage " + name) }

// names lists a directory's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range entries {
		ns = append(ns, e.Name())
	}
	return ns
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	if ns := names(t, dir); len(ns) != 0 {
		t.Errorf("%s holds %v, want nothing", dir, ns)
	}
}

func assertClean(t *testing.T, s *Store) {
	t.Helper()
	problems, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("Verify: %s", p)
	}
}

func blobsDir(s *Store) string { return filepath.Join(s.Dir(), "blobs", "sha256") }
