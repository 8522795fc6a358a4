package eucabundle_test

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/internal/eucabundle"
	"github.com/fgimg/fgimg/internal/testkit"
)

// setup writes and loads the keys; it returns their folder, the keys,
// the cloud's private key and the user's certificate.
func setup(t *testing.T) (string, *eucabundle.Keys, *rsa.PrivateKey, *x509.Certificate) {
	cloud, user, dir := eucabundle.UseTestCredentials(t)
	k, err := eucabundle.LoadKeys()
	if err != nil {
		t.Fatal(err)
	}
	return dir, k, cloud, user
}

// image is compressible but not trivially: text with random words.
func image(size int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < size {
		fmt.Fprintf(&b, "%x ", r.Uint64()>>uint(r.IntN(60)))
	}
	return b.Bytes()[:size]
}

// bundle writes the bundle of img into dir and returns the manifest.
func bundle(t *testing.T, dir string, k *eucabundle.Keys, img []byte, im eucabundle.Image) []byte {
	m, err := eucabundle.Write(bytes.NewReader(img), int64(len(img)), im, k, func(name string, data []byte) error {
		return os.WriteFile(filepath.Join(dir, name), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, eucabundle.ManifestName(im.Name)), m, 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestRoundTrip bundles an image of three parts and unbundles it as the
// cloud does: the signature verifies with the user's certificate, the
// parts' digests match, and the cloud's private key gives the original
// bytes back.
func TestRoundTrip(t *testing.T) {
	dir, k, cloudKey, user := setup(t)
	img := image(2*eucabundle.PartSize + 12345)
	raw := bundle(t, dir, k, img, eucabundle.Image{Name: "root.img", Arch: "x86_64", Type: eucabundle.TypeMachine,
		KernelID: "eki-12345678", RamdiskID: "eri-87654321"})
	m, err := eucabundle.Read(raw, user)
	if err != nil {
		t.Fatal(err)
	}
	if m.Machine.KernelID != "eki-12345678" || m.Machine.RamdiskID != "eri-87654321" || m.Image.Type != "machine" || m.Image.User != "123456789012" {
		t.Errorf("manifest: %+v", m.Machine)
	}
	parts := m.Parts()
	if len(parts) < 2 {
		t.Fatalf("%d parts, want several for %d bytes", len(parts), len(img))
	}
	for i, p := range parts {
		if want := fmt.Sprintf("root.img.part.%02d", i); p.Filename != want {
			t.Errorf("part %d is %s, want %s", i, p.Filename, want)
		}
		if st, _ := os.Stat(filepath.Join(dir, p.Filename)); i < len(parts)-1 && st.Size() != eucabundle.PartSize {
			t.Errorf("part %s is %d bytes, want %d", p.Filename, st.Size(), eucabundle.PartSize)
		}
	}
	var out bytes.Buffer
	open := func(name string) (io.ReadCloser, error) { return os.Open(filepath.Join(dir, name)) }
	if err := m.Unbundle(cloudKey, open, &out); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), img) {
		t.Fatalf("unbundled %d bytes differ from the %d bundled", out.Len(), len(img))
	}

	// A part changed on the way: its digest no longer matches.
	p1 := filepath.Join(dir, parts[1].Filename)
	b, _ := os.ReadFile(p1)
	b[100] ^= 1
	os.WriteFile(p1, b, 0o644)
	if err := m.Unbundle(cloudKey, open, io.Discard); err == nil || !strings.Contains(err.Error(), "SHA-1") {
		t.Errorf("a corrupt part unbundled: %v", err)
	}
	// A manifest changed after signing does not verify.
	forged := bytes.Replace(raw, []byte("eki-12345678"), []byte("eki-00000000"), 1)
	if _, err := eucabundle.Read(forged, user); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Errorf("a forged manifest verified: %v", err)
	}
	// Nor with another user's certificate.
	_, other, _, _ := eucabundle.TestCredentials(t.TempDir())
	if _, err := eucabundle.Read(raw, other); err == nil {
		t.Error("the manifest verified with another user's certificate")
	}
}

// TestOpenSSL unbundles with the tools euca2ools itself runs (openssl
// rsautl, openssl enc -d -aes-128-cbc, gzip -d, tar) and verifies the
// signature with openssl dgst: the bundle is the format, not just what
// this package reads back.
func TestOpenSSL(t *testing.T) {
	testkit.Need(t, "openssl", "gzip", "tar")
	dir, k, _, _ := setup(t)
	img := image(300000)
	raw := bundle(t, dir, k, img, eucabundle.Image{Name: "vmlinuz", Arch: "x86_64", Type: eucabundle.TypeKernel})
	m, err := eucabundle.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if m.Machine.KernelID != "true" {
		t.Errorf("a kernel bundle's kernel_id is %q, want the magic true", m.Machine.KernelID)
	}
	s := string(raw)
	signed := s[strings.Index(s, "<machine_configuration>") : strings.Index(s, "</image>")+len("</image>")]
	os.WriteFile(filepath.Join(dir, "signed"), []byte(signed), 0o644)
	writeHex(t, filepath.Join(dir, "sig"), m.Signature)
	writeHex(t, filepath.Join(dir, "key.enc"), m.Image.EC2Key)
	writeHex(t, filepath.Join(dir, "iv.enc"), m.Image.EC2IV)
	var names []string
	for _, p := range m.Parts() {
		names = append(names, p.Filename)
	}
	script := `set -e
openssl x509 -in cert.pem -pubkey -noout > user.pub
openssl dgst -sha1 -verify user.pub -signature sig signed
key=$(openssl pkeyutl -decrypt -pkeyopt rsa_padding_mode:pkcs1 -inkey cloud-pk.pem -in key.enc)
iv=$(openssl pkeyutl -decrypt -pkeyopt rsa_padding_mode:pkcs1 -inkey cloud-pk.pem -in iv.enc)
mkdir out
cat ` + strings.Join(names, " ") + ` | openssl enc -d -aes-128-cbc -K "$key" -iv "$iv" | gzip -dc | tar -x -C out
`
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unbundling with openssl: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, "out", "vmlinuz"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) {
		t.Fatal("openssl's unbundling gave other bytes")
	}
}

func writeHex(t *testing.T, path, h string) {
	b := make([]byte, len(h)/2)
	if _, err := fmt.Sscanf(h, "%x", &b); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, b, 0o644)
}

func TestLoadKeysNamesMissingVariable(t *testing.T) {
	setup(t)
	for _, v := range []string{"EUCALYPTUS_CERT", "EC2_CERT", "EC2_PRIVATE_KEY", "EC2_USER_ID"} {
		old := os.Getenv(v)
		t.Setenv(v, "")
		if _, err := eucabundle.LoadKeys(); err == nil || !strings.Contains(err.Error(), v) {
			t.Errorf("without %s: %v", v, err)
		}
		t.Setenv(v, old)
	}
}
