package jks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"
)

// keytool.jks was written by OpenJDK 17's keytool: two trusted
// certificates (as ca-certificates-java adds them) and an EC key pair.
func readFixture(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/keytool.jks")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// entryTimes parses the keystore again and returns its entries' times.
func entryTimes(t *testing.T, b []byte) []time.Time {
	t.Helper()
	p := &parser{b: b[:len(b)-20]}
	version, count := p.u32at(4), p.u32at(8)
	p.off = 12
	var times []time.Time
	for i := uint32(0); i < count; i++ {
		tag := p.u32()
		p.utf()
		if !p.need(8) {
			t.Fatal(p.err)
		}
		times = append(times, time.UnixMilli(int64(binary.BigEndian.Uint64(b[p.off:]))))
		p.off += 8
		if tag == 1 {
			p.skip(int(p.u32()))
			for n := p.u32(); n > 0; n-- {
				p.cert(version)
			}
		} else {
			p.cert(version)
		}
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return times
}

func TestSetTimesRewritesEveryEntryAndTheDigest(t *testing.T) {
	orig := readFixture(t)
	epoch := time.Unix(1700000000, 0)
	out, err := SetTimes(orig, DefaultPassword, epoch)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(orig) {
		t.Fatalf("size changed: %d -> %d", len(orig), len(out))
	}
	times := entryTimes(t, out)
	if len(times) != 3 {
		t.Fatalf("%d entries, want 3", len(times))
	}
	for i, tm := range times {
		if !tm.Equal(epoch) {
			t.Errorf("entry %d: time %v, want %v", i, tm, epoch)
		}
	}
	if before := entryTimes(t, orig); before[0].Equal(epoch) {
		t.Fatal("the fixture already has the epoch: the test proves nothing")
	}
	// The result verifies as a keystore, so SetTimes accepts it again and
	// is idempotent.
	again, err := SetTimes(out, DefaultPassword, epoch)
	if err != nil {
		t.Fatalf("the rewritten keystore does not verify: %v", err)
	}
	if !bytes.Equal(again, out) {
		t.Fatal("a second rewrite changed the keystore")
	}
	if bytes.Equal(orig, out) {
		t.Fatal("nothing was rewritten")
	}
	// Only the times and the digest differ from the original.
	var diff int
	for i := range orig {
		if orig[i] != out[i] {
			diff++
		}
	}
	if diff > 3*8+20 {
		t.Fatalf("%d bytes differ, more than 3 times and a digest", diff)
	}
}

func TestSetTimesRefusesWhatItCannotVerify(t *testing.T) {
	orig := readFixture(t)
	epoch := time.Unix(0, 0)
	if _, err := SetTimes(orig, "not-the-password", epoch); err == nil {
		t.Fatal("a keystore under another password was rewritten")
	}
	tampered := bytes.Clone(orig)
	tampered[100] ^= 1
	if _, err := SetTimes(tampered, DefaultPassword, epoch); err == nil {
		t.Fatal("a tampered keystore was rewritten")
	}
	if _, err := SetTimes([]byte("-----BEGIN CERTIFICATE-----\n"), DefaultPassword, epoch); !errors.Is(err, ErrNotJKS) {
		t.Fatalf("PEM: %v, want ErrNotJKS", err)
	}
	// A keystore cut short, with a digest that verifies, is malformed.
	short := bytes.Clone(orig[:200])
	binary.BigEndian.PutUint32(short[8:], 3)
	short = append(short[:len(short)-20], integrity(DefaultPassword, short[:len(short)-20])...)
	if _, err := SetTimes(short, DefaultPassword, epoch); err == nil {
		t.Fatal("a truncated keystore was rewritten")
	}
}
