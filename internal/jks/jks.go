// Package jks makes a Java KeyStore (JKS) file reproducible: it rewrites
// the creation time of every entry and the keystore's integrity digest,
// leaving the entries, their order and their certificates as they were.
//
// Debian's ca-certificates-java writes /etc/ssl/certs/java/cacerts as a
// JKS whose entries carry the time they were added, so two installs of
// the same packages differ (debuerreotype issue #72; p11-kit fixed the
// same in its own JKS writer by honouring SOURCE_DATE_EPOCH).
//
// The format (sun.security.provider.JavaKeyStore): magic 0xFEEDFEED,
// version 1 or 2, a count, then per entry a tag (1 private key, 2
// trusted certificate), a modified-UTF-8 alias, the creation time in
// milliseconds, and the key or certificates; last, a SHA-1 over the
// password as UTF-16BE, the words "Mighty Aphrodite" and all of the above.
package jks

import (
	"bytes"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf16"
)

const magic = 0xFEEDFEED

// DefaultPassword is the store password Java and ca-certificates-java use
// unless told otherwise.
const DefaultPassword = "changeit"

// ErrNotJKS says the data is not a JKS keystore.
var ErrNotJKS = errors.New("not a JKS keystore")

// SetTimes returns a copy of the keystore data with every entry's
// creation time set to t and the integrity digest recomputed. The
// digest must verify with password, so a keystore under another
// password is refused rather than rewritten with a wrong digest.
func SetTimes(data []byte, password string, t time.Time) ([]byte, error) {
	if len(data) < 12+sha1.Size || binary.BigEndian.Uint32(data) != magic {
		return nil, ErrNotJKS
	}
	body := data[:len(data)-sha1.Size]
	if !bytes.Equal(integrity(password, body), data[len(body):]) {
		return nil, errors.New("the keystore's integrity digest does not verify with the password given")
	}
	out := bytes.Clone(data)
	p := &parser{b: out[:len(body)]}
	version := p.u32at(4)
	if version != 1 && version != 2 {
		return nil, fmt.Errorf("JKS version %d is not known", version)
	}
	count := p.u32at(8)
	p.off = 12
	ms := uint64(t.UnixMilli())
	for i := uint32(0); i < count && p.err == nil; i++ {
		tag := p.u32()
		p.utf() // alias
		if p.err == nil && p.need(8) {
			binary.BigEndian.PutUint64(p.b[p.off:], ms)
			p.off += 8
		}
		switch tag {
		case 1: // private key: the encrypted key, then its chain
			p.skip(int(p.u32()))
			for n := p.u32(); n > 0 && p.err == nil; n-- {
				p.cert(version)
			}
		case 2: // trusted certificate
			p.cert(version)
		default:
			return nil, fmt.Errorf("entry %d: tag %d is not a JKS entry", i+1, tag)
		}
	}
	if p.err != nil {
		return nil, p.err
	}
	if p.off != len(body) {
		return nil, fmt.Errorf("%d bytes after the last entry", len(body)-p.off)
	}
	copy(out[len(body):], integrity(password, out[:len(body)]))
	return out, nil
}

// integrity is the keystore's trailing digest over body.
func integrity(password string, body []byte) []byte {
	h := sha1.New()
	for _, u := range utf16.Encode([]rune(password)) {
		h.Write([]byte{byte(u >> 8), byte(u)})
	}
	h.Write([]byte("Mighty Aphrodite"))
	h.Write(body)
	return h.Sum(nil)
}

type parser struct {
	b   []byte
	off int
	err error
}

func (p *parser) need(n int) bool {
	if p.err == nil && (n < 0 || len(p.b)-p.off < n) {
		p.err = fmt.Errorf("%w: truncated at byte %d", ErrNotJKS, p.off)
	}
	return p.err == nil
}

func (p *parser) u32at(off int) uint32 { return binary.BigEndian.Uint32(p.b[off:]) }

func (p *parser) u32() uint32 {
	if !p.need(4) {
		return 0
	}
	v := p.u32at(p.off)
	p.off += 4
	return v
}

func (p *parser) skip(n int) {
	if p.need(n) {
		p.off += n
	}
}

// utf skips a modified-UTF-8 string: a 16-bit length and its bytes.
func (p *parser) utf() {
	if p.need(2) {
		n := int(binary.BigEndian.Uint16(p.b[p.off:]))
		p.off += 2
		p.skip(n)
	}
}

// cert skips a certificate: its type (version 2) and its encoding.
func (p *parser) cert(version uint32) {
	if version == 2 {
		p.utf()
	}
	p.skip(int(p.u32()))
}
