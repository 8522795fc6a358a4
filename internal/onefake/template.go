package onefake

import (
	"encoding/xml"
	"fmt"
	"strings"
)

// attr is one attribute of an OpenNebula template: a single value, or a
// vector (NAME = [ K = V, ... ]) when vector is not nil.
type attr struct {
	name   string
	value  string
	vector []attr
}

// parseTemplate parses the `attribute = value` form of an OpenNebula
// template as oned's scanner and grammar do (src/parsers/template_parser.l
// and template_syntax.y): names are [A-Za-z0-9_]+ and upper-cased; a value
// is a double-quoted string, in which \" stands for " and nothing else is
// an escape (a backslash is itself), or a bare word up to a blank, '=',
// '#', ',', '[', ']' or a newline; `NAME =` at the end of a line is an
// empty value; `NAME = [ K = V, ... ]` is a vector; lines starting with #
// are comments. A value with "]]>" on its line aborts the parse, as oned
// does. Where flex's default rule would echo and skip a stray character,
// this parser reports it.
func parseTemplate(s string) ([]attr, error) {
	p := &tparser{s: s, line: 1}
	var attrs []attr
	for {
		p.skipSpace()
		if p.i >= len(p.s) {
			return attrs, nil
		}
		a, err := p.attribute()
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
	}
}

type tparser struct {
	s    string
	i    int
	line int
}

func (p *tparser) errorf(format string, args ...any) error {
	return fmt.Errorf("syntax error, %s at line %d", fmt.Sprintf(format, args...), p.line)
}

func (p *tparser) advance(n int) {
	p.line += strings.Count(p.s[p.i:p.i+n], "\n")
	p.i += n
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

// skipSpace skips blanks, newlines and comment lines.
func (p *tparser) skipSpace() {
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch {
		case isBlank(c) || c == '\n':
			p.advance(1)
		case c == '#':
			end := strings.IndexByte(p.s[p.i:], '\n')
			if end < 0 {
				end = len(p.s) - p.i
			}
			p.advance(end)
		default:
			return
		}
	}
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func (p *tparser) variable() (string, error) {
	j := p.i
	for j < len(p.s) && isNameChar(p.s[j]) {
		j++
	}
	if j == p.i {
		if p.i >= len(p.s) {
			return "", p.errorf("unexpected end of template, expecting VARIABLE")
		}
		return "", p.errorf("unexpected %q, expecting VARIABLE", p.s[p.i])
	}
	name := strings.ToUpper(p.s[p.i:j])
	p.advance(j - p.i)
	return name, nil
}

// equal reads `[blank]*=[blank]*`; empty reports the EQUAL_EMPTY form,
// `=` then blanks then a newline.
func (p *tparser) equal() (empty bool, err error) {
	j := p.i
	for j < len(p.s) && isBlank(p.s[j]) {
		j++
	}
	if j >= len(p.s) || p.s[j] != '=' {
		return false, p.errorf("unexpected %s, expecting EQUAL", p.describe(j))
	}
	j++
	for j < len(p.s) && isBlank(p.s[j]) {
		j++
	}
	if j < len(p.s) && p.s[j] == '\n' {
		p.advance(j + 1 - p.i)
		return true, nil
	}
	p.advance(j - p.i)
	return false, nil
}

func (p *tparser) describe(j int) string {
	if j >= len(p.s) {
		return "end of template"
	}
	return fmt.Sprintf("%q", p.s[j])
}

// assignment reads `VARIABLE EQUAL` or `VARIABLE EQUAL_EMPTY`.
func (p *tparser) assignment() (name string, empty bool, err error) {
	if name, err = p.variable(); err != nil {
		return "", false, err
	}
	empty, err = p.equal()
	return name, empty, err
}

func (p *tparser) attribute() (attr, error) {
	name, empty, err := p.assignment()
	if err != nil {
		return attr{}, err
	}
	if empty {
		return attr{name: name}, nil
	}
	// A vector: [blank]*\[[blank\n]*
	if p.i < len(p.s) && p.s[p.i] == '[' {
		p.advance(1)
		p.skipBlankNewline()
		vec := []attr{}
		if p.i < len(p.s) && p.s[p.i] == ']' {
			p.advance(1)
			return attr{name: name, vector: vec}, nil
		}
		for {
			k, empty, err := p.assignment()
			if err != nil {
				return attr{}, err
			}
			if empty {
				return attr{}, p.errorf("unexpected EQUAL_EMPTY, expecting EQUAL")
			}
			v, err := p.value()
			if err != nil {
				return attr{}, err
			}
			vec = append(vec, attr{name: k, value: v})
			p.skipBlankNewline()
			if p.i >= len(p.s) {
				return attr{}, p.errorf("unexpected end of template, expecting COMMA or CBRACKET")
			}
			switch p.s[p.i] {
			case ',':
				p.advance(1)
				p.skipBlankNewline()
			case ']':
				p.advance(1)
				return attr{name: name, vector: vec}, nil
			default:
				return attr{}, p.errorf("unexpected %q, expecting COMMA or CBRACKET", p.s[p.i])
			}
		}
	}
	v, err := p.value()
	if err != nil {
		return attr{}, err
	}
	return attr{name: name, value: v}, nil
}

func (p *tparser) skipBlankNewline() {
	for p.i < len(p.s) && (isBlank(p.s[p.i]) || p.s[p.i] == '\n') {
		p.advance(1)
	}
}

// value reads a value in the scanner's VALUE state, by longest match
// between its rules as flex does: the CDATA guard (.*]]>.* : the rest of
// the line holds "]]>"), a double-quoted string and a bare word.
func (p *tparser) value() (string, error) {
	rest := p.s[p.i:]
	lineEnd := strings.IndexByte(rest, '\n')
	if lineEnd < 0 {
		lineEnd = len(rest)
	}
	cdata := 0
	if strings.Contains(rest[:lineEnd], "]]>") {
		cdata = lineEnd
	}
	quoted := quotedLen(rest)
	bare := 0
	for bare < len(rest) && !strings.ContainsRune("=#, \t\n[]", rune(rest[bare])) {
		bare++
	}
	switch {
	case cdata > 0 && cdata >= quoted && cdata >= bare:
		return "", p.errorf("value holds \"]]>\"")
	case quoted > 0 && quoted >= bare:
		v := strings.ReplaceAll(rest[1:quoted-1], `\"`, `"`)
		p.advance(quoted)
		return v, nil
	case bare > 0:
		p.advance(bare)
		return rest[:bare], nil
	}
	return "", p.errorf("unexpected %s, expecting STRING", p.describe(p.i))
}

// quotedLen is the length of the longest match of \"([^\"]|\\\")*\" at
// the start of s, or 0. Inside the quotes any character but " is taken
// alone, and \" is taken as a pair, so a backslash before a quote may
// either end the string there or escape the quote: flex keeps the
// longest of these.
func quotedLen(s string) int {
	if s == "" || s[0] != '"' {
		return 0
	}
	body := s[1:]
	reach := make([]bool, len(body)+1)
	reach[0] = true
	best := 0
	for i := 0; i < len(body); i++ {
		if !reach[i] {
			continue
		}
		if body[i] == '"' {
			best = i + 2 // the opening quote, the body, the closing quote
			continue
		}
		reach[i+1] = true
		if body[i] == '\\' && i+1 < len(body) && body[i+1] == '"' {
			reach[i+2] = true
		}
	}
	return best
}

// parseXMLTemplate parses the XML form of a template, which the API
// takes wherever it takes a template: a TEMPLATE root whose elements are
// single attributes (text) or vectors (elements of text).
func parseXMLTemplate(s string) ([]attr, error) {
	var root struct {
		XMLName xml.Name
		Attrs   []struct {
			XMLName xml.Name
			Text    string `xml:",chardata"`
			Inner   []struct {
				XMLName xml.Name
				Text    string `xml:",chardata"`
			} `xml:",any"`
		} `xml:",any"`
	}
	if err := xml.Unmarshal([]byte(s), &root); err != nil {
		return nil, fmt.Errorf("syntax error in XML template: %v", err)
	}
	if root.XMLName.Local != "TEMPLATE" {
		return nil, fmt.Errorf("the root element of an XML template is <%s>, not <TEMPLATE>", root.XMLName.Local)
	}
	var attrs []attr
	for _, a := range root.Attrs {
		at := attr{name: strings.ToUpper(a.XMLName.Local), value: a.Text}
		if a.Inner != nil {
			at.value, at.vector = "", []attr{}
			for _, v := range a.Inner {
				at.vector = append(at.vector, attr{name: strings.ToUpper(v.XMLName.Local), value: v.Text})
			}
		}
		attrs = append(attrs, at)
	}
	return attrs, nil
}

// get returns the value of the first single attribute called name.
func get(attrs []attr, name string) (string, bool) {
	for _, a := range attrs {
		if a.name == name && a.vector == nil {
			return a.value, true
		}
	}
	return "", false
}

// erase removes every attribute called name and returns the first
// single value, as oned's erase_template_attribute does.
func erase(attrs *[]attr, name string) string {
	v, _ := get(*attrs, name)
	kept := (*attrs)[:0]
	for _, a := range *attrs {
		if a.name != name {
			kept = append(kept, a)
		}
	}
	*attrs = kept
	return v
}

// templateXML writes attrs as oned writes a template: each value in a
// CDATA section (split where it holds "]]>").
func templateXML(b *strings.Builder, attrs []attr) {
	b.WriteString("<TEMPLATE>")
	for _, a := range attrs {
		b.WriteString("<" + a.name + ">")
		if a.vector != nil {
			for _, v := range a.vector {
				b.WriteString("<" + v.name + ">" + cdata(v.value) + "</" + v.name + ">")
			}
		} else {
			b.WriteString(cdata(a.value))
		}
		b.WriteString("</" + a.name + ">")
	}
	b.WriteString("</TEMPLATE>")
}

func cdata(s string) string {
	return "<![CDATA[" + strings.ReplaceAll(s, "]]>", "]]]]><![CDATA[>") + "]]>"
}
