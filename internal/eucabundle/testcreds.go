package eucabundle

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestCredentials writes into dir what a eucarc points at for tests: a
// cloud certificate and key (cloud-cert.pem, cloud-pk.pem) and a user's
// (cert.pem, pk.pem), self-signed RSA. It returns the cloud's private
// key (the unbundler's), the user's certificate (the signature's) and
// the eucarc variables (EUCALYPTUS_CERT, EC2_CERT, EC2_PRIVATE_KEY,
// EC2_USER_ID) to set.
func TestCredentials(dir string) (cloud *rsa.PrivateKey, user *x509.Certificate, env map[string]string, err error) {
	write := func(cn, certFile, keyFile string) (*rsa.PrivateKey, *x509.Certificate, error) {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			return nil, nil, err
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, certFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
			return nil, nil, err
		}
		kb := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
		return k, c, os.WriteFile(filepath.Join(dir, keyFile), kb, 0o600)
	}
	cloud, _, err = write("cloud", "cloud-cert.pem", "cloud-pk.pem")
	if err != nil {
		return nil, nil, nil, err
	}
	if _, user, err = write("user", "cert.pem", "pk.pem"); err != nil {
		return nil, nil, nil, err
	}
	env = map[string]string{
		"EUCALYPTUS_CERT": filepath.Join(dir, "cloud-cert.pem"),
		"EC2_CERT":        filepath.Join(dir, "cert.pem"),
		"EC2_PRIVATE_KEY": filepath.Join(dir, "pk.pem"),
		"EC2_USER_ID":     "123456789012",
	}
	return cloud, user, env, nil
}

// UseTestCredentials writes TestCredentials into a temporary folder of
// tb's, which it returns, and sets their eucarc variables for tb.
func UseTestCredentials(tb testing.TB) (cloud *rsa.PrivateKey, user *x509.Certificate, dir string) {
	tb.Helper()
	dir = tb.TempDir()
	cloud, user, env, err := TestCredentials(dir)
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range env {
		tb.Setenv(k, v)
	}
	return cloud, user, dir
}
