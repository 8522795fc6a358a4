// Package lang reads fgimg templates (*.fg.hcl and *.fg.json) into a
// Config: it parses them, evaluates variables, locals and functions,
// resolves each image's pedigree, and reports every problem as an
// hcl.Diagnostic with a source range.
//
// Loading runs in two phases, as Terraform's configs and lang packages
// do: the structure is decoded against schemas first, keeping the
// expressions, and they are evaluated afterwards in dependency order.
package lang
