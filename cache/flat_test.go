package cache

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// tarLayer makes a layer of regular files, name to content.
func tarLayer(t *testing.T, files ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for i := 0; i < len(files); i += 2 {
		h := &tar.Header{Name: files[i], Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(files[i+1]))}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(files[i+1]))
	}
	tw.Close()
	return b.Bytes()
}

// A chain deeper than overlayfs can stack is mounted as a flat snapshot
// of its bottom layers plus the rest; the flat one holds the layers
// applied in order, whiteouts included, and verify checks it.
func TestLowerDirsOfADeepChain(t *testing.T) {
	s := openStore(t, t.TempDir())
	const n = 2*flatStep + 7
	var chain []digest.Digest // topmost first
	for i := range n {
		files := []string{fmt.Sprintf("layer-%d", i), fmt.Sprint(i)}
		if i == 1 {
			files = append(files, "gone", "x")
		}
		if i == 5 {
			files = append(files, ".wh.gone", "")
		}
		d, err := s.PutBlob(bytes.NewReader(tarLayer(t, files...)))
		if err != nil {
			t.Fatal(err)
		}
		chain = append([]digest.Digest{d.Digest}, chain...)
	}
	lower, err := s.LowerDirs(chain, unpackLayer)
	if err != nil {
		t.Fatal(err)
	}
	if len(lower) != 8 || !strings.HasPrefix(lower[7], flatPrefix) {
		t.Fatalf("lower dirs %v, want the top 7 layers and one flat snapshot", lower)
	}
	flat := filepath.Join(s.SnapshotsDir(), lower[7])
	for i := range 2 * flatStep {
		if b, err := os.ReadFile(filepath.Join(flat, fmt.Sprintf("layer-%d", i))); err != nil || string(b) != fmt.Sprint(i) {
			t.Fatalf("layer-%d in the flat snapshot: %q %v", i, b, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(flat, "gone")); err == nil {
		t.Error("a file whited out by a later layer is in the flat snapshot")
	}
	if _, err := os.Lstat(filepath.Join(flat, fmt.Sprintf("layer-%d", 2*flatStep))); err == nil {
		t.Error("a layer above the cut is in the flat snapshot")
	}
	// The stage below reuses the same flat snapshot.
	again, err := s.LowerDirs(chain[1:], unpackLayer)
	if err != nil || again[len(again)-1] != lower[7] {
		t.Errorf("lower dirs of the same chain: %v, %v", again, err)
	}
	assertClean(t, s)

	os.WriteFile(filepath.Join(flat, "layer-3"), []byte("tampered"), 0o644)
	problems, err := s.Verify()
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0].Kind != TamperedSnapshot || !strings.Contains(problems[0].Detail, "layer-3 differs") {
		t.Errorf("Verify = %v, want the tampered flat snapshot", problems)
	}
	if _, err := os.Stat(flat); err == nil {
		t.Error("the tampered flat snapshot is still there")
	}
	if _, err := s.LowerDirs(chain, unpackLayer); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(flat, "layer-3")); string(b) != "3" {
		t.Errorf("the remade flat snapshot has layer-3 %q", b)
	}
	assertClean(t, s)
}
