package lang

import "github.com/zclconf/go-cty/cty"

// TargetSchema is what lang knows of one target kind: its attributes
// besides image. lang declares no kind itself; the kinds' schemas reach
// it through LoadOptions.TargetKinds, as provider schemas reach
// Terraform's core.
type TargetSchema struct {
	Attributes []TargetAttribute
	// Check validates the attributes together, after each was checked
	// on its own; values holds every attribute (see Target.Attrs), an
	// attribute already diagnosed as an unknown value, which Check skips.
	Check func(values map[string]cty.Value) []TargetProblem
	// Refused maps attribute names the kind will not take to the
	// diagnostic's detail, for names users write by habit that must not
	// be in a template (credentials): clearer than "Unsupported argument".
	Refused map[string]string
}

// TargetAttribute is one attribute of a target kind.
type TargetAttribute struct {
	Name string
	// Type is cty.String, cty.Bool, cty.Number, a list of one of them
	// or a map of strings.
	Type cty.Type
	// Default is the value when the template sets none; cty.NilVal
	// means a null of Type.
	Default cty.Value
	// Enum, when set, lists a string attribute's allowed values.
	Enum []string
	// Validate checks a value the template sets; its error becomes a
	// diagnostic at the attribute's expression.
	Validate func(cty.Value) error
	// Doc is one line for documentation.
	Doc string
}

// TargetProblem is a problem Check found: a diagnostic at the attribute
// named (at the target's header when the template does not set it).
type TargetProblem struct {
	Attribute string
	Summary   string
	Detail    string
}
