// Package xmlrpc encodes and decodes the XML-RPC documents
// (http://xmlrpc.com/spec.md) that OpenNebula's API speaks: method calls
// and method responses, including faults. It holds the wire format only;
// the transport (net/http, retries) belongs to the caller.
//
// Values map to Go as: <string> (and an untyped <value>) ↔ string,
// <int>/<i4>/<i8> ↔ int, <boolean> ↔ bool, <double> ↔ float64,
// <array> ↔ []any, <struct> ↔ map[string]any. Other types (base64,
// dateTime.iso8601, nil) are rejected with an error naming them, since
// OpenNebula's methods neither take nor return them.
package xmlrpc

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Fault is an XML-RPC fault response: the server could not run the call
// at all (unknown method, wrong parameter types or count, a malformed
// request), as opposed to a call that ran and reported failure.
type Fault struct {
	Code    int
	Message string
}

func (f *Fault) Error() string {
	return fmt.Sprintf("XML-RPC fault %d: %s", f.Code, f.Message)
}

// Fault codes of the xmlrpc-c library that OpenNebula's server is built on.
const (
	FaultType         = -501 // a parameter of the wrong type, or too few parameters
	FaultParse        = -503 // the request is not a well-formed XML-RPC call
	FaultNoSuchMethod = -506
)

// I8 is an integer that is always encoded as <i8>, as xmlrpc-c does for
// 64-bit values; it decodes as an int like any integer.
type I8 int64

// EncodeCall returns the <methodCall> document for method with params.
func EncodeCall(method string, params ...any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString("<methodCall><methodName>")
	if err := xml.EscapeText(&b, []byte(method)); err != nil {
		return nil, err
	}
	b.WriteString("</methodName><params>")
	for i, p := range params {
		b.WriteString("<param>")
		if err := encodeValue(&b, p); err != nil {
			return nil, fmt.Errorf("parameter %d of %s: %w", i, method, err)
		}
		b.WriteString("</param>")
	}
	b.WriteString("</params></methodCall>")
	return b.Bytes(), nil
}

// EncodeResponse returns the <methodResponse> document returning v.
func EncodeResponse(v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString("<methodResponse><params><param>")
	if err := encodeValue(&b, v); err != nil {
		return nil, err
	}
	b.WriteString("</param></params></methodResponse>")
	return b.Bytes(), nil
}

// EncodeFault returns the <methodResponse> document carrying f.
func EncodeFault(f *Fault) []byte {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString("<methodResponse><fault>")
	// A struct of a string and an int cannot fail to encode.
	_ = encodeValue(&b, map[string]any{"faultCode": f.Code, "faultString": f.Message})
	b.WriteString("</fault></methodResponse>")
	return b.Bytes()
}

func encodeValue(b *bytes.Buffer, v any) error {
	b.WriteString("<value>")
	switch v := v.(type) {
	case string:
		b.WriteString("<string>")
		if err := escape(b, v); err != nil {
			return err
		}
		b.WriteString("</string>")
	case I8:
		fmt.Fprintf(b, "<i8>%d</i8>", v)
	case int:
		if v < math.MinInt32 || v > math.MaxInt32 {
			fmt.Fprintf(b, "<i8>%d</i8>", v)
		} else {
			fmt.Fprintf(b, "<int>%d</int>", v)
		}
	case bool:
		if v {
			b.WriteString("<boolean>1</boolean>")
		} else {
			b.WriteString("<boolean>0</boolean>")
		}
	case float64:
		b.WriteString("<double>" + strconv.FormatFloat(v, 'f', -1, 64) + "</double>")
	case []any:
		b.WriteString("<array><data>")
		for _, e := range v {
			if err := encodeValue(b, e); err != nil {
				return err
			}
		}
		b.WriteString("</data></array>")
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("<struct>")
		for _, k := range keys {
			b.WriteString("<member><name>")
			if err := escape(b, k); err != nil {
				return err
			}
			b.WriteString("</name>")
			if err := encodeValue(b, v[k]); err != nil {
				return err
			}
			b.WriteString("</member>")
		}
		b.WriteString("</struct>")
	default:
		return fmt.Errorf("xmlrpc: cannot encode a %T", v)
	}
	b.WriteString("</value>")
	return nil
}

// escape writes s as XML character data; XML 1.0 cannot carry most
// control characters, so a string holding one is refused rather than
// silently altered.
func escape(b *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return errors.New("xmlrpc: string is not valid UTF-8")
	}
	for _, r := range s {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return fmt.Errorf("xmlrpc: string holds character %U, which XML cannot carry", r)
		}
	}
	// EscapeText turns \n into &#xA;, which keeps it through parsers that
	// normalise line ends.
	return xml.EscapeText(b, []byte(s))
}

// DecodeCall reads a <methodCall> document.
func DecodeCall(r io.Reader) (method string, params []any, err error) {
	d := xml.NewDecoder(r)
	if err := expectStart(d, "methodCall"); err != nil {
		return "", nil, err
	}
	for {
		t, err := nextStart(d)
		if err != nil {
			return "", nil, err
		}
		if t == nil {
			return method, params, nil
		}
		switch t.Name.Local {
		case "methodName":
			method, err = text(d)
			if err != nil {
				return "", nil, err
			}
		case "params":
			params, err = decodeParams(d)
			if err != nil {
				return "", nil, err
			}
		default:
			return "", nil, fmt.Errorf("xmlrpc: unexpected <%s> in <methodCall>", t.Name.Local)
		}
	}
}

// DecodeResponse reads a <methodResponse> document: its single value,
// or a *Fault as the error.
func DecodeResponse(r io.Reader) (any, error) {
	d := xml.NewDecoder(r)
	if err := expectStart(d, "methodResponse"); err != nil {
		return nil, err
	}
	t, err := nextStart(d)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, errors.New("xmlrpc: empty <methodResponse>")
	}
	switch t.Name.Local {
	case "params":
		ps, err := decodeParams(d)
		if err != nil {
			return nil, err
		}
		if len(ps) != 1 {
			return nil, fmt.Errorf("xmlrpc: response has %d values, want 1", len(ps))
		}
		return ps[0], nil
	case "fault":
		v, err := expectValue(d)
		if err != nil {
			return nil, err
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("xmlrpc: fault is a %T, want a struct", v)
		}
		code, _ := m["faultCode"].(int)
		msg, _ := m["faultString"].(string)
		return nil, &Fault{Code: code, Message: msg}
	default:
		return nil, fmt.Errorf("xmlrpc: unexpected <%s> in <methodResponse>", t.Name.Local)
	}
}

// decodeParams reads the <param>s of a <params> whose start was read.
func decodeParams(d *xml.Decoder) ([]any, error) {
	var ps []any
	for {
		t, err := nextStart(d)
		if err != nil {
			return nil, err
		}
		if t == nil {
			return ps, nil
		}
		if t.Name.Local != "param" {
			return nil, fmt.Errorf("xmlrpc: unexpected <%s> in <params>", t.Name.Local)
		}
		v, err := expectValue(d)
		if err != nil {
			return nil, fmt.Errorf("parameter %d: %w", len(ps), err)
		}
		if err := expectEnd(d); err != nil {
			return nil, err
		}
		ps = append(ps, v)
	}
}

// expectValue reads a <value> element and its closing tag.
func expectValue(d *xml.Decoder) (any, error) {
	t, err := nextStart(d)
	if err != nil {
		return nil, err
	}
	if t == nil || t.Name.Local != "value" {
		return nil, errors.New("xmlrpc: missing <value>")
	}
	return decodeValue(d)
}

// decodeValue reads the inside of a <value> whose start was read, and
// its end.
func decodeValue(d *xml.Decoder) (any, error) {
	// An untyped <value>text</value> is a string.
	var untyped strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("xmlrpc: %w", err)
		}
		switch tok := tok.(type) {
		case xml.CharData:
			untyped.Write(tok)
		case xml.EndElement:
			return untyped.String(), nil
		case xml.StartElement:
			v, err := decodeTyped(d, tok.Name.Local)
			if err != nil {
				return nil, err
			}
			return v, expectEnd(d)
		}
	}
}

func decodeTyped(d *xml.Decoder, typ string) (any, error) {
	switch typ {
	case "string":
		return text(d)
	case "int", "i4", "i8":
		s, err := text(d)
		if err != nil {
			return nil, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || typ != "i8" && (n < math.MinInt32 || n > math.MaxInt32) {
			return nil, fmt.Errorf("xmlrpc: <%s>%s</%s> is not a valid integer", typ, s, typ)
		}
		return int(n), nil
	case "boolean":
		s, err := text(d)
		if err != nil {
			return nil, err
		}
		switch strings.TrimSpace(s) {
		case "1":
			return true, nil
		case "0":
			return false, nil
		}
		return nil, fmt.Errorf("xmlrpc: <boolean>%s</boolean> is neither 0 nor 1", s)
	case "double":
		s, err := text(d)
		if err != nil {
			return nil, err
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, fmt.Errorf("xmlrpc: <double>%s</double> is not a number", s)
		}
		return f, nil
	case "array":
		if err := expectStart(d, "data"); err != nil {
			return nil, err
		}
		a := []any{}
		for {
			t, err := nextStart(d)
			if err != nil {
				return nil, err
			}
			if t == nil { // </data>
				return a, expectEnd(d)
			}
			if t.Name.Local != "value" {
				return nil, fmt.Errorf("xmlrpc: unexpected <%s> in <data>", t.Name.Local)
			}
			v, err := decodeValue(d)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
	case "struct":
		m := map[string]any{}
		for {
			t, err := nextStart(d)
			if err != nil {
				return nil, err
			}
			if t == nil {
				return m, nil
			}
			if t.Name.Local != "member" {
				return nil, fmt.Errorf("xmlrpc: unexpected <%s> in <struct>", t.Name.Local)
			}
			if err := expectStart(d, "name"); err != nil {
				return nil, err
			}
			name, err := text(d)
			if err != nil {
				return nil, err
			}
			v, err := expectValue(d)
			if err != nil {
				return nil, err
			}
			if err := expectEnd(d); err != nil {
				return nil, err
			}
			m[name] = v
		}
	}
	return nil, fmt.Errorf("xmlrpc: values of type <%s> are not supported", typ)
}

// text reads character data up to the end of the current element.
func text(d *xml.Decoder) (string, error) {
	var s strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return "", fmt.Errorf("xmlrpc: %w", err)
		}
		switch tok := tok.(type) {
		case xml.CharData:
			s.Write(tok)
		case xml.EndElement:
			return s.String(), nil
		case xml.StartElement:
			return "", fmt.Errorf("xmlrpc: unexpected <%s> in text", tok.Name.Local)
		}
	}
}

// nextStart returns the next start element, or nil at the end of the
// current element; it skips character data (whitespace), comments and
// processing instructions.
func nextStart(d *xml.Decoder) (*xml.StartElement, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, fmt.Errorf("xmlrpc: %w", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			return &tok, nil
		case xml.EndElement:
			return nil, nil
		case xml.CharData:
			if len(bytes.TrimSpace(tok)) != 0 {
				return nil, fmt.Errorf("xmlrpc: unexpected text %q", tok)
			}
		}
	}
}

func expectStart(d *xml.Decoder, name string) error {
	t, err := nextStart(d)
	if err != nil {
		return err
	}
	if t == nil || t.Name.Local != name {
		return fmt.Errorf("xmlrpc: missing <%s>", name)
	}
	return nil
}

func expectEnd(d *xml.Decoder) error {
	t, err := nextStart(d)
	if err != nil {
		return err
	}
	if t != nil {
		return fmt.Errorf("xmlrpc: unexpected <%s>", t.Name.Local)
	}
	return nil
}
