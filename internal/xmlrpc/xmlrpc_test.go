package xmlrpc

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// A response as xmlrpc-c writes OpenNebula's failure array: boolean,
// string, int, int and an <i8>, with whitespace between elements.
func TestDecodeResponseOpenNebulaFailure(t *testing.T) {
	doc := `<?xml version="1.0" encoding="UTF-8"?>
<methodResponse>
<params>
<param><value><array><data>
<value><boolean>0</boolean></value>
<value><string>[one.image.info] Error getting image [7].</string></value>
<value><i4>1024</i4></value>
<value><int>7</int></value>
<value><i8>0</i8></value>
</data></array></value></param>
</params>
</methodResponse>`
	v, err := DecodeResponse(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{false, "[one.image.info] Error getting image [7].", 1024, 7, 0}
	if !reflect.DeepEqual(v, want) {
		t.Fatalf("got %#v, want %#v", v, want)
	}
}

func TestDecodeFault(t *testing.T) {
	doc := `<?xml version="1.0"?><methodResponse><fault><value><struct>
<member><name>faultCode</name><value><int>-501</int></value></member>
<member><name>faultString</name><value><string>Not enough parameters</string></value></member>
</struct></value></fault></methodResponse>`
	_, err := DecodeResponse(strings.NewReader(doc))
	var f *Fault
	if !errors.As(err, &f) || f.Code != FaultType || f.Message != "Not enough parameters" {
		t.Fatalf("got %v, want fault -501", err)
	}
}

func TestCallRoundTrip(t *testing.T) {
	hostile := "NAME = \"x\" <&> ]]> \n\ttab"
	doc, err := EncodeCall("one.image.allocate", "user:pass", hostile, 1, false, 1<<40, []any{"a", 2}, map[string]any{"k": true})
	if err != nil {
		t.Fatal(err)
	}
	m, ps, err := DecodeCall(bytes.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	want := []any{"user:pass", hostile, 1, false, 1 << 40, []any{"a", 2}, map[string]any{"k": true}}
	if m != "one.image.allocate" || !reflect.DeepEqual(ps, want) {
		t.Fatalf("got %s %#v, want %#v", m, ps, want)
	}
}

func TestUntypedValueIsString(t *testing.T) {
	_, ps, err := DecodeCall(strings.NewReader(`<methodCall><methodName>m</methodName><params><param><value>a b</value></param></params></methodCall>`))
	if err != nil || !reflect.DeepEqual(ps, []any{"a b"}) {
		t.Fatalf("got %#v, %v", ps, err)
	}
}

func TestEncodeRefusesControlCharacters(t *testing.T) {
	if _, err := EncodeCall("m", "a\x00b"); err == nil {
		t.Fatal("a NUL in a string was encoded")
	}
	if _, err := EncodeCall("m", "a\xffb"); err == nil {
		t.Fatal("invalid UTF-8 was encoded")
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	for _, doc := range []string{
		`<methodCall><methodName>m</methodName><params><param><value><int>x</int></value></param></params></methodCall>`,
		`<methodCall><methodName>m</methodName><params><param><value><int>99999999999</int></value></param></params></methodCall>`,
		`<methodCall><methodName>m</methodName><params><param><value><base64>AA==</base64></value></param></params></methodCall>`,
		`<methodCall><methodName>m</methodName><params><param><value><string>unclosed</value></param></params></methodCall>`,
		`<notACall/>`,
	} {
		if _, _, err := DecodeCall(strings.NewReader(doc)); err == nil {
			t.Errorf("accepted %s", doc)
		}
	}
}
