// Package eucabundle writes and reads image bundles in the format of
// euca2ools (euca-bundle-image) and the EC2 AMI tools, the format
// Eucalyptus registers instance-store images (EMI, EKI, ERI) from, with
// Go's standard crypto only. It was written from euca2ools' source
// (euca2ools/bundle/manifest.py, bundle/pipes/core.py and fittings.py,
// commands/bundle/mixins.py):
//
//   - the image file goes into a tar stream as one member named after
//     the image; the SHA-1 of that tar stream is the image's digest;
//   - the tar stream is gzipped (klauspost/compress's gzip, the standard
//     format, faster than compress/gzip) and encrypted with AES-128-CBC (PKCS#7
//     padding, as `openssl enc`) under a random key and IV;
//   - the ciphertext is cut into parts of 10 MiB, NAME.part.00, .01, ...,
//     each with its SHA-1 in the manifest;
//   - the manifest (NAME.manifest.xml) holds the key and IV, as hex
//     strings, RSA-encrypted (PKCS#1 v1.5) for the cloud's certificate
//     (ec2_encrypted_*) and the user's (user_encrypted_*), and the user's
//     signature: RSA PKCS#1 v1.5 over the SHA-1 of the
//     <machine_configuration> and <image> elements exactly as written.
//
// Read and Unbundle do what the cloud's unbundler does: verify the
// signature with the user's certificate, check each part's digest,
// decrypt the key with the cloud's private key, and recover the image.
package eucabundle

import (
	"archive/tar"
	"bytes"

	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/klauspost/compress/gzip"
)

// PartSize is the size of every part but the last, as euca2ools cuts
// them.
const PartSize = 10 << 20

// Image types of a bundle's manifest.
const (
	TypeMachine = "machine"
	TypeKernel  = "kernel"
	TypeRamdisk = "ramdisk"
)

// Keys are the certificates and key a bundle is made with.
type Keys struct {
	Cloud   *x509.Certificate // the cloud's: it decrypts the bundle (EUCALYPTUS_CERT)
	User    *x509.Certificate // the user's: the key is also encrypted for it (EC2_CERT)
	UserKey *rsa.PrivateKey   // the user's: it signs the manifest (EC2_PRIVATE_KEY)
	Account string            // the user's account ID, the manifest's <user> (EC2_USER_ID)
}

// LoadKeys reads the keys from the files the eucarc's variables name:
// EUCALYPTUS_CERT (the cloud's certificate), EC2_CERT and
// EC2_PRIVATE_KEY (the user's), and the account ID EC2_USER_ID. A
// missing variable is an error naming it.
func LoadKeys() (*Keys, error) {
	path := func(v, what string) (string, error) {
		p := os.Getenv(v)
		if p == "" {
			return "", fmt.Errorf("bundling an instance-store image needs %s, %s (source the cloud's eucarc)", v, what)
		}
		return p, nil
	}
	var k Keys
	var err error
	for _, c := range []struct {
		v, what string
		dst     **x509.Certificate
	}{
		{"EUCALYPTUS_CERT", "the cloud's certificate (cloud-cert.pem)", &k.Cloud},
		{"EC2_CERT", "the user's certificate (euca2-…-cert.pem)", &k.User},
	} {
		p, err := path(c.v, c.what)
		if err != nil {
			return nil, err
		}
		if *c.dst, err = readCert(p); err != nil {
			return nil, fmt.Errorf("%s: %w", c.v, err)
		}
	}
	p, err := path("EC2_PRIVATE_KEY", "the user's private key (euca2-…-pk.pem)")
	if err != nil {
		return nil, err
	}
	if k.UserKey, err = readKey(p); err != nil {
		return nil, fmt.Errorf("EC2_PRIVATE_KEY: %w", err)
	}
	if !k.UserKey.PublicKey.Equal(k.User.PublicKey) {
		return nil, errors.New("EC2_PRIVATE_KEY is not the key of the certificate EC2_CERT names")
	}
	if k.Account, err = path("EC2_USER_ID", "the account ID the manifest names"); err != nil {
		return nil, err
	}
	return &k, nil
}

func readPEM(path, want string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM %s", path, want)
	}
	return blk.Bytes, nil
}

func readCert(path string) (*x509.Certificate, error) {
	der, err := readPEM(path, "certificate")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, ok := c.PublicKey.(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("%s: not an RSA certificate (bundles need RSA)", path)
	}
	return c, nil
}

func readKey(path string) (*rsa.PrivateKey, error) {
	der, err := readPEM(path, "private key")
	if err != nil {
		return nil, err
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%s: not a PKCS#1 or PKCS#8 private key: %w", path, err)
	}
	rk, ok := k.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA private key", path)
	}
	return rk, nil
}

// Image says what a bundle holds.
type Image struct {
	Name string // the file's name: the tar member, the parts' and manifest's prefix
	Arch string // x86_64, i386, arm64
	Type string // TypeMachine, TypeKernel, TypeRamdisk
	// KernelID and RamdiskID are a machine image's EKI and ERI, if any.
	KernelID, RamdiskID string
}

// ManifestName is the file name of the manifest of the bundle of name.
func ManifestName(name string) string { return name + ".manifest.xml" }

// Write bundles the image read from r, size bytes long, calling part
// with each part's file name and bytes in order, and returns the signed
// manifest.
func Write(r io.Reader, size int64, im Image, k *Keys, part func(name string, data []byte) error) ([]byte, error) {
	switch im.Type {
	case TypeMachine, TypeKernel, TypeRamdisk:
	default:
		return nil, fmt.Errorf("bundle %s: unknown image type %q", im.Name, im.Type)
	}
	key, iv := make([]byte, 16), make([]byte, 16)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if _, err := rand.Read(iv); err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	sp := &splitter{name: im.Name, emit: part}
	enc := &cbcWriter{mode: cipher.NewCBCEncrypter(block, iv), w: sp}
	gz := gzip.NewWriter(enc)
	sum := sha1.New()
	tw := tar.NewWriter(io.MultiWriter(sum, gz))
	if err := tw.WriteHeader(&tar.Header{Name: im.Name, Size: size, Mode: 0o644, Typeflag: tar.TypeReg, Format: tar.FormatGNU}); err != nil {
		return nil, err
	}
	n, err := io.Copy(tw, r)
	if err != nil {
		return nil, err
	}
	if n != size {
		return nil, fmt.Errorf("bundle %s: read %d bytes, want %d", im.Name, n, size)
	}
	for _, c := range []io.Closer{tw, gz, enc, sp} {
		if err := c.Close(); err != nil {
			return nil, err
		}
	}
	m := &manifest{im: im, digest: hex.EncodeToString(sum.Sum(nil)), size: size, bundled: sp.total, parts: sp.parts}
	hexKey, hexIV := []byte(hex.EncodeToString(key)), []byte(hex.EncodeToString(iv))
	for _, e := range []struct {
		dst  *string
		data []byte
		cert *x509.Certificate
	}{{&m.ec2Key, hexKey, k.Cloud}, {&m.userKey, hexKey, k.User}, {&m.ec2IV, hexIV, k.Cloud}, {&m.userIV, hexIV, k.User}} {
		c, err := rsa.EncryptPKCS1v15(rand.Reader, e.cert.PublicKey.(*rsa.PublicKey), e.data)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: encrypting the key: %w", im.Name, err)
		}
		*e.dst = hex.EncodeToString(c)
	}
	m.account = k.Account
	return m.sign(k.UserKey)
}

// splitter cuts the ciphertext into parts.
type splitter struct {
	name  string
	emit  func(string, []byte) error
	buf   []byte
	total int64
	parts []Part
}

// Part is one part of a bundle as its manifest lists it.
type Part struct {
	Filename string
	SHA1     string // hex
}

func (s *splitter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(PartSize-len(s.buf), len(p))
		s.buf = append(s.buf, p[:k]...)
		p = p[k:]
		if len(s.buf) == PartSize {
			if err := s.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (s *splitter) flush() error {
	name := fmt.Sprintf("%s.part.%02d", s.name, len(s.parts))
	sum := sha1.Sum(s.buf)
	if err := s.emit(name, s.buf); err != nil {
		return fmt.Errorf("bundle %s: part %s: %w", s.name, name, err)
	}
	s.parts = append(s.parts, Part{Filename: name, SHA1: hex.EncodeToString(sum[:])})
	s.total += int64(len(s.buf))
	s.buf = s.buf[:0]
	return nil
}

func (s *splitter) Close() error {
	if len(s.buf) > 0 || len(s.parts) == 0 {
		return s.flush()
	}
	return nil
}

// cbcWriter encrypts whole blocks and pads the last one (PKCS#7) on
// Close, as openssl enc does.
// Decrypting (decrypt), it holds the last block back for unpad.
type cbcWriter struct {
	mode    cipher.BlockMode
	w       io.Writer
	buf     []byte
	decrypt bool
}

func (c *cbcWriter) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	n := len(c.buf) / aes.BlockSize * aes.BlockSize
	if c.decrypt && n == len(c.buf) {
		n -= aes.BlockSize
	}
	if n == 0 {
		return len(p), nil
	}
	out := make([]byte, n)
	c.mode.CryptBlocks(out, c.buf[:n])
	c.buf = append(c.buf[:0], c.buf[n:]...)
	if _, err := c.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *cbcWriter) Close() error {
	pad := aes.BlockSize - len(c.buf)
	last := append(c.buf, bytes.Repeat([]byte{byte(pad)}, pad)...)
	c.mode.CryptBlocks(last, last)
	_, err := c.w.Write(last)
	return err
}

type manifest struct {
	im                             Image
	account                        string
	digest                         string
	size, bundled                  int64
	ec2Key, userKey, ec2IV, userIV string
	parts                          []Part
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// sign writes the manifest as euca2ools does (no whitespace between
// elements) and signs machine_configuration and image as written.
func (m *manifest) sign(key *rsa.PrivateKey) ([]byte, error) {
	var mc, img strings.Builder
	mc.WriteString("<machine_configuration><architecture>" + esc(m.im.Arch) + "</architecture>")
	// Eucalyptus marks kernel and ramdisk images with the magic "true".
	kernel, ramdisk := m.im.KernelID, m.im.RamdiskID
	switch m.im.Type {
	case TypeKernel:
		kernel, ramdisk = "true", ""
	case TypeRamdisk:
		kernel, ramdisk = "", "true"
	}
	if kernel != "" {
		mc.WriteString("<kernel_id>" + esc(kernel) + "</kernel_id>")
	}
	if ramdisk != "" {
		mc.WriteString("<ramdisk_id>" + esc(ramdisk) + "</ramdisk_id>")
	}
	mc.WriteString("</machine_configuration>")
	fmt.Fprintf(&img, "<image><name>%s</name><user>%s</user><type>%s</type>", esc(m.im.Name), esc(m.account), m.im.Type)
	fmt.Fprintf(&img, `<digest algorithm="SHA1">%s</digest><size>%d</size><bundled_size>%d</bundled_size>`, m.digest, m.size, m.bundled)
	fmt.Fprintf(&img, `<ec2_encrypted_key algorithm="AES-128-CBC">%s</ec2_encrypted_key>`, m.ec2Key)
	fmt.Fprintf(&img, `<user_encrypted_key algorithm="AES-128-CBC">%s</user_encrypted_key>`, m.userKey)
	fmt.Fprintf(&img, `<ec2_encrypted_iv>%s</ec2_encrypted_iv><user_encrypted_iv>%s</user_encrypted_iv>`, m.ec2IV, m.userIV)
	fmt.Fprintf(&img, `<parts count="%d">`, len(m.parts))
	for i, p := range m.parts {
		fmt.Fprintf(&img, `<part index="%d"><filename>%s</filename><digest algorithm="SHA1">%s</digest></part>`, i, esc(p.Filename), p.SHA1)
	}
	img.WriteString("</parts></image>")
	signed := mc.String() + img.String()
	h := sha1.Sum([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA1, h[:])
	if err != nil {
		return nil, fmt.Errorf("signing the manifest of %s: %w", m.im.Name, err)
	}
	out := "<?xml version='1.0' encoding='ASCII'?>\n<manifest><version>2007-10-10</version>" +
		"<bundler><name>fgimg</name><version>1</version><release>0</release></bundler>" +
		signed + "<signature>" + hex.EncodeToString(sig) + "</signature></manifest>"
	return []byte(out), nil
}

// Manifest is a bundle's manifest as Read parses it.
type Manifest struct {
	XMLName xml.Name `xml:"manifest"`
	Machine struct {
		Architecture string `xml:"architecture"`
		KernelID     string `xml:"kernel_id"`
		RamdiskID    string `xml:"ramdisk_id"`
	} `xml:"machine_configuration"`
	Image struct {
		Name   string `xml:"name"`
		User   string `xml:"user"`
		Type   string `xml:"type"`
		Digest struct {
			Algorithm string `xml:"algorithm,attr"`
			Hex       string `xml:",chardata"`
		} `xml:"digest"`
		Size        int64  `xml:"size"`
		BundledSize int64  `xml:"bundled_size"`
		EC2Key      string `xml:"ec2_encrypted_key"`
		UserKey     string `xml:"user_encrypted_key"`
		EC2IV       string `xml:"ec2_encrypted_iv"`
		UserIV      string `xml:"user_encrypted_iv"`
		Parts       struct {
			Count int `xml:"count,attr"`
			Part  []struct {
				Index    int    `xml:"index,attr"`
				Filename string `xml:"filename"`
				Digest   struct {
					Algorithm string `xml:"algorithm,attr"`
					Hex       string `xml:",chardata"`
				} `xml:"digest"`
			} `xml:"part"`
		} `xml:"parts"`
	} `xml:"image"`
	Signature string `xml:"signature"`
}

// Parts are the parts' file names and SHA-1s in order.
func (m *Manifest) Parts() []Part {
	out := make([]Part, len(m.Image.Parts.Part))
	for i, p := range m.Image.Parts.Part {
		out[i] = Part{Filename: p.Filename, SHA1: strings.TrimSpace(p.Digest.Hex)}
	}
	return out
}

// Parse parses a manifest without verifying it (what retiring a bundle
// needs: its parts' names).
func Parse(b []byte) (*Manifest, error) {
	var m Manifest
	d := xml.NewDecoder(bytes.NewReader(b))
	d.CharsetReader = func(label string, r io.Reader) (io.Reader, error) {
		if l := strings.ToLower(label); l == "ascii" || l == "us-ascii" || l == "utf-8" {
			return r, nil
		}
		return nil, fmt.Errorf("manifest in encoding %q", label)
	}
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("parsing the bundle's manifest: %w", err)
	}
	if m.Image.Parts.Count != len(m.Image.Parts.Part) {
		return nil, fmt.Errorf("manifest of %s: parts count=%d but %d parts listed", m.Image.Name, m.Image.Parts.Count, len(m.Image.Parts.Part))
	}
	for i, p := range m.Image.Parts.Part {
		if p.Index != i {
			return nil, fmt.Errorf("manifest of %s: part %d has index %d", m.Image.Name, i, p.Index)
		}
		if p.Digest.Algorithm != "SHA1" {
			return nil, fmt.Errorf("manifest of %s: part %s digest algorithm %q, want SHA1", m.Image.Name, p.Filename, p.Digest.Algorithm)
		}
	}
	return &m, nil
}

// Read parses a manifest and verifies its signature with the user's
// certificate, as the cloud does on RegisterImage.
func Read(b []byte, user *x509.Certificate) (*Manifest, error) {
	m, err := Parse(b)
	if err != nil {
		return nil, err
	}
	s := string(b)
	i, j := strings.Index(s, "<machine_configuration>"), strings.Index(s, "</image>")
	if i < 0 || j < i {
		return nil, errors.New("manifest has no machine_configuration and image to verify")
	}
	h := sha1.Sum([]byte(s[i : j+len("</image>")]))
	sig, err := hex.DecodeString(strings.TrimSpace(m.Signature))
	if err != nil {
		return nil, fmt.Errorf("manifest of %s: signature is not hex", m.Image.Name)
	}
	pub, ok := user.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, errors.New("the user's certificate is not RSA")
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA1, h[:], sig); err != nil {
		return nil, fmt.Errorf("manifest of %s: the signature does not verify with the user's certificate", m.Image.Name)
	}
	return m, nil
}

// CheckPart reads one part and checks its SHA-1 against the manifest's.
func CheckPart(p Part, r io.Reader) error {
	h := sha1.New()
	if _, err := io.Copy(h, r); err != nil {
		return fmt.Errorf("reading part %s: %w", p.Filename, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA1 {
		return fmt.Errorf("part %s: SHA-1 %s, manifest says %s", p.Filename, got, p.SHA1)
	}
	return nil
}

// Unbundle recovers the image of a manifest Read verified, as the
// cloud's unbundler does: open returns each part's bytes, whose digests
// are checked; the key and IV are decrypted with the cloud's private
// key; the image is written to w and its digest and size checked.
func (m *Manifest) Unbundle(cloud *rsa.PrivateKey, open func(filename string) (io.ReadCloser, error), w io.Writer) error {
	key, err := decryptHex(cloud, m.Image.EC2Key)
	if err != nil {
		return fmt.Errorf("bundle %s: decrypting the key: %w", m.Image.Name, err)
	}
	iv, err := decryptHex(cloud, m.Image.EC2IV)
	if err != nil {
		return fmt.Errorf("bundle %s: decrypting the IV: %w", m.Image.Name, err)
	}
	if len(key) != 16 || len(iv) != 16 {
		return fmt.Errorf("bundle %s: key or IV is not 128 bits", m.Image.Name)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() {
		dec := &cbcWriter{mode: cipher.NewCBCDecrypter(block, iv), w: pw, decrypt: true}
		for _, p := range m.Parts() {
			rc, err := open(p.Filename)
			if err != nil {
				pw.CloseWithError(err)
				return
			}
			// A part is checked whole before any of it is decrypted.
			b, err := io.ReadAll(rc)
			rc.Close()
			if err == nil {
				err = CheckPart(p, bytes.NewReader(b))
			}
			if err == nil {
				_, err = dec.Write(b)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.CloseWithError(dec.unpad())
	}()
	defer pr.Close()
	gz, err := gzip.NewReader(pr)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", m.Image.Name, err)
	}
	sum := sha1.New()
	tr := tar.NewReader(io.TeeReader(gz, sum))
	hdr, err := tr.Next()
	if err != nil {
		return fmt.Errorf("bundle %s: reading its tar stream: %w", m.Image.Name, err)
	}
	n, err := io.Copy(w, tr)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", m.Image.Name, err)
	}
	// The digest covers the whole tar stream, its end blocks too.
	if _, err := io.Copy(io.Discard, io.TeeReader(gz, sum)); err != nil {
		return fmt.Errorf("bundle %s: %w", m.Image.Name, err)
	}
	if n != m.Image.Size || hdr.Size != n {
		return fmt.Errorf("bundle %s: image is %d bytes, manifest says %d", m.Image.Name, n, m.Image.Size)
	}
	if got := hex.EncodeToString(sum.Sum(nil)); got != strings.TrimSpace(m.Image.Digest.Hex) {
		return fmt.Errorf("bundle %s: image digest %s, manifest says %s", m.Image.Name, got, m.Image.Digest.Hex)
	}
	return nil
}

// unpad decrypts what a decrypting cbcWriter holds back: the last block,
// whose PKCS#7 padding it removes.
func (c *cbcWriter) unpad() error {
	if len(c.buf) != aes.BlockSize {
		return errors.New("ciphertext is not a whole number of blocks")
	}
	last := make([]byte, aes.BlockSize)
	c.mode.CryptBlocks(last, c.buf)
	pad := int(last[len(last)-1])
	if pad == 0 || pad > aes.BlockSize {
		return errors.New("bad padding: wrong key?")
	}
	_, err := c.w.Write(last[:aes.BlockSize-pad])
	return err
}

func decryptHex(key *rsa.PrivateKey, h string) ([]byte, error) {
	c, err := hex.DecodeString(strings.TrimSpace(h))
	if err != nil {
		return nil, err
	}
	p, err := rsa.DecryptPKCS1v15(nil, key, c)
	if err != nil {
		return nil, err
	}
	return hex.DecodeString(string(p)) // the key travels as a hex string
}
