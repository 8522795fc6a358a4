// Package registertest writes built cloud targets (artifacts,
// manifest.json, register.json) as fgimg build leaves them, for the
// tests of register and of each Cloud.
package registertest

import (
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/fgimg/fgimg/internal/layer"
	"github.com/fgimg/fgimg/internal/onefake"
	"github.com/fgimg/fgimg/internal/outdir"
	"github.com/fgimg/fgimg/internal/qcow2"
	"github.com/fgimg/fgimg/register"
	"github.com/opencontainers/go-digest"
)

// Write makes OUT/<f.Target>/ as a build of f's target would: each
// step's artifact copied from files[step.Artifact], its digest and size
// filled into the step, register.json, and a manifest.json listing them
// all. It returns f as written.
func Write(tb testing.TB, out string, f register.File, files map[string]string) register.File {
	tb.Helper()
	dir := filepath.Join(out, f.Target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	if f.Version == 0 {
		f.Version = register.FileVersion
	}
	if f.TargetDigest == "" {
		f.TargetDigest = digest.FromString("target " + f.Target)
	}
	type artifact struct {
		Path   string        `json:"path"`
		Digest digest.Digest `json:"digest"`
		Size   int64         `json:"size"`
	}
	var listed []artifact
	f.Steps = append([]register.Step(nil), f.Steps...)
	for i, s := range f.Steps {
		d, n := copyFile(tb, files[s.Artifact], filepath.Join(dir, filepath.FromSlash(s.Artifact)))
		f.Steps[i].Digest, f.Steps[i].Size = d, n
		listed = append(listed, artifact{s.Artifact, d, n})
	}
	b, _ := json.MarshalIndent(f, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, register.FileName), b, 0o644); err != nil {
		tb.Fatal(err)
	}
	listed = append(listed, artifact{register.FileName, digest.FromBytes(b), int64(len(b))})
	m, _ := json.MarshalIndent(map[string]any{"target": f.Target, "kind": f.Kind, "artifacts": listed}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, outdir.ManifestName), m, 0o644); err != nil {
		tb.Fatal(err)
	}
	return f
}

func copyFile(tb testing.TB, src, dst string) (digest.Digest, int64) {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		tb.Fatal(err)
	}
	out, err := os.Create(dst)
	if err != nil {
		tb.Fatal(err)
	}
	v := digest.SHA256.Digester()
	n, err := io.Copy(io.MultiWriter(out, v.Hash()), in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
	return v.Digest(), n
}

// Qcow2 writes a real qcow2 image at path whose disk holds size bytes
// of pseudo-random data from seed (so different seeds give different
// images, and the data does not compress away).
func Qcow2(tb testing.TB, path string, size int64, seed uint64) {
	tb.Helper()
	raw := path + ".raw"
	Random(tb, raw, size, seed)
	defer os.Remove(raw)
	if _, err := qcow2.ConvertFile(context.Background(), path, raw, qcow2.Options{}); err != nil {
		tb.Fatal(err)
	}
}

// Random writes size pseudo-random bytes from seed to path.
func Random(tb testing.TB, path string, size int64, seed uint64) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := make([]byte, 1<<20)
	for left := size; left > 0; left -= int64(len(buf)) {
		n := min(int64(len(buf)), left)
		for i := 0; i < int(n); i += 8 {
			v := r.Uint64()
			for j := 0; j < 8 && i+j < int(n); j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		if _, err := f.Write(buf[:n]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// Disk is a File with one qcow2 disk step for target, as an openstack
// target's writer makes it.
func Disk(target string) register.File {
	return register.File{
		Target: target, Kind: "openstack", Image: "base",
		Steps: []register.Step{{
			ID: "disk", Artifact: "disk.qcow2", Name: target, Format: "qcow2", ContainerFormat: "bare",
			Visibility: "private", Properties: map[string]string{"os_distro": "debian", "hw_disk_bus": "virtio"},
		}},
	}
}

// OpenNebula serves the OpenNebula protocol fake (internal/onefake) with
// one user, and points ONE_XMLRPC and ONE_AUTH at it for the test. It
// returns the ONE_AUTH file ("user:password"), which the test may rewrite.
func OpenNebula(tb testing.TB, user, password string) (authFile string) {
	tb.Helper()
	fake := onefake.New(tb.TempDir())
	fake.AddUser(user, password)
	srv := httptest.NewServer(fake)
	tb.Cleanup(func() { srv.Close(); fake.Wait() })
	authFile = filepath.Join(tb.TempDir(), "one_auth")
	if err := os.WriteFile(authFile, []byte(user+":"+password+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	tb.Setenv("ONE_XMLRPC", srv.URL+"/RPC2")
	tb.Setenv("ONE_AUTH", authFile)
	return authFile
}

// Manifest writes dir's manifest.json as fgimg build does: every file in
// dir (but the manifest) with its digest and size. Kind writers' own
// output (targets.Kind.Write) then reads as a built target.
func Manifest(tb testing.TB, dir, target, kind string) {
	tb.Helper()
	type artifact struct {
		Path   string        `json:"path"`
		Digest digest.Digest `json:"digest"`
		Size   int64         `json:"size"`
	}
	var listed []artifact
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() == outdir.ManifestName {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		dg, err := digest.SHA256.FromReader(f)
		if err != nil {
			return err
		}
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		listed = append(listed, artifact{filepath.ToSlash(rel), dg, fi.Size()})
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	m, _ := json.MarshalIndent(map[string]any{"target": target, "kind": kind, "artifacts": listed}, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, outdir.ManifestName), m, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// Root writes a small root filesystem, files (slash-separated path →
// content, mode 0755), into a temporary directory and returns it: what a
// test gives a target writer instead of a built image.
func Root(tb testing.TB, files map[string]string) string {
	tb.Helper()
	root := tb.TempDir()
	for p, body := range files {
		p = filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	return root
}

// LayerTar writes root as one uncompressed layer tar, as the cache keeps a
// stage's layer, and returns its path, digest and size.
func LayerTar(tb testing.TB, root string) (string, digest.Digest, int64) {
	tb.Helper()
	p := filepath.Join(tb.TempDir(), "layer.tar")
	f, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	v := digest.SHA256.Digester()
	cw := &countWriter{w: io.MultiWriter(f, v.Hash())}
	err = layer.WriteTree(cw, root, layer.Options{})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatal(err)
	}
	return p, v.Digest(), cw.n
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// Read returns the register.json a writer left in dir.
func Read(tb testing.TB, dir string) register.File {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, register.FileName))
	if err != nil {
		tb.Fatal(err)
	}
	var f register.File
	if err := json.Unmarshal(b, &f); err != nil {
		tb.Fatalf("%s: %v", register.FileName, err)
	}
	return f
}
