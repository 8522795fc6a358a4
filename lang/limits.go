package lang

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Limits that keep a hostile or broken template from exhausting the
// loader: HCL's parser and evaluator recurse once per level of nesting
// (100,000 parentheses overflow the Go stack), and the planner keeps
// every image's whole pedigree.
const (
	// MaxTemplateSize bounds one template or variable file.
	MaxTemplateSize = 4 << 20
	// MaxConfigSize bounds all the template files of a configuration.
	MaxConfigSize = 16 << 20
	// MaxNesting bounds how deep an expression nests: brackets, braces,
	// parentheses, templates and their directives, plus the operators
	// chained at one level (a + b + … nests as deep as it is long).
	MaxNesting = 256
	// MaxPedigree bounds how many images a pedigree holds.
	MaxPedigree = 256
	// MaxNameLength bounds variable, image and target names.
	MaxNameLength = 128
)

// checkNesting scans HCL native source for nesting deeper than
// MaxNesting without parsing it (the scanner does not recurse) and
// reports where the limit is first passed.
func checkNesting(src []byte, filename string, template bool) hcl.Diagnostics {
	var toks hclsyntax.Tokens
	if template {
		toks, _ = hclsyntax.LexTemplate(src, filename, hcl.InitialPos)
	} else {
		toks, _ = hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	}
	var n nesting
	return n.scan(toks)
}

// scan steps through toks and reports where the depth first passes
// MaxNesting.
func (n *nesting) scan(toks hclsyntax.Tokens) hcl.Diagnostics {
	for i, tok := range toks {
		var next *hclsyntax.Token
		if i+1 < len(toks) {
			next = &toks[i+1]
		}
		if n.step(tok, next) > MaxNesting {
			return hcl.Diagnostics{nestingDiag(tok.Range)}
		}
	}
	return nil
}

func nestingDiag(rng hcl.Range) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Expression nested too deeply",
		Detail: fmt.Sprintf("Expressions may nest at most %d levels deep (brackets, parentheses, templates and the operators chained at one level count); this one goes deeper here. Split it into local values.",
			MaxNesting),
		Subject: rng.Ptr(),
	}
}

// nesting follows the depth of a token stream.
type nesting struct {
	levels []level // open brackets; levels[0] is the top level
	depth  int     // len(levels)-1 plus every level's ops plus directives
}

type level struct {
	open hclsyntax.TokenType
	ops  int // operators chained at this level since its last separator
}

// step takes one token (and peeks at the next, for template directives)
// and returns the depth after it.
func (n *nesting) step(tok hclsyntax.Token, next *hclsyntax.Token) int {
	if len(n.levels) == 0 {
		n.levels = []level{{open: hclsyntax.TokenNil}}
	}
	top := &n.levels[len(n.levels)-1]
	switch tok.Type {
	case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
		hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc, hclsyntax.TokenTemplateInterp:
		n.levels = append(n.levels, level{open: tok.Type})
		n.depth++
	case hclsyntax.TokenTemplateControl:
		n.levels = append(n.levels, level{open: tok.Type})
		n.depth++
		// %{ if } and %{ for } open a nested template until their end.
		if next != nil && next.Type == hclsyntax.TokenIdent {
			switch string(next.Bytes) {
			case "if", "for":
				n.depth++
			case "endif", "endfor":
				n.depth--
			}
		}
	case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen,
		hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenTemplateSeqEnd:
		if len(n.levels) > 1 {
			n.depth -= 1 + top.ops
			n.levels = n.levels[:len(n.levels)-1]
		}
	case hclsyntax.TokenComma, hclsyntax.TokenEqual, hclsyntax.TokenFatArrow:
		n.depth -= top.ops
		top.ops = 0
	case hclsyntax.TokenNewline:
		// Newlines end an item at the top level and in a body or
		// object; inside parentheses and brackets they are ignored.
		if top.open == hclsyntax.TokenNil || top.open == hclsyntax.TokenOBrace {
			n.depth -= top.ops
			top.ops = 0
		}
	case hclsyntax.TokenPlus, hclsyntax.TokenMinus, hclsyntax.TokenStar, hclsyntax.TokenSlash, hclsyntax.TokenPercent,
		hclsyntax.TokenEqualOp, hclsyntax.TokenNotEqual, hclsyntax.TokenLessThan, hclsyntax.TokenLessThanEq,
		hclsyntax.TokenGreaterThan, hclsyntax.TokenGreaterThanEq, hclsyntax.TokenAnd, hclsyntax.TokenOr,
		hclsyntax.TokenBang, hclsyntax.TokenQuestion, hclsyntax.TokenColon:
		top.ops++
		n.depth++
	}
	return n.depth
}

// checkJSONNesting does the same for JSON syntax: the depth of arrays
// and objects plus that of the templates in its strings, which HCL
// parses as native syntax.
func checkJSONNesting(src []byte, filename string) hcl.Diagnostics {
	depth := 0
	line, col := 1, 1
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch c {
		case '[', '{':
			depth++
			if depth > MaxNesting {
				p := hcl.Pos{Line: line, Column: col, Byte: i}
				return hcl.Diagnostics{nestingDiag(hcl.Range{Filename: filename, Start: p, End: p})}
			}
		case ']', '}':
			depth--
		case '"':
			// Find the end of the string, then scan it as a template.
			j := i + 1
			for j < len(src) && src[j] != '"' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			if j > len(src) {
				j = len(src)
			}
			start := hcl.Pos{Line: line, Column: col + 1, Byte: i + 1}
			var n nesting
			n.depth = depth
			toks, _ := hclsyntax.LexTemplate(src[i+1:j], filename, start)
			if diags := n.scan(toks); diags.HasErrors() {
				return diags
			}
			col += j - i
			i = j
			continue
		case '\n':
			line, col = line+1, 1
			continue
		}
		col++
	}
	return nil
}

// sizeDiag reports a template file over MaxTemplateSize.
func sizeDiag(filename string, size int64, max int64, what string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Template too large",
		Detail:   fmt.Sprintf("%s is %d bytes; %s may be at most %d MiB.", filename, size, what, max>>20),
		Subject:  &hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos},
	}
}
