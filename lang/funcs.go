package lang

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Functions returns the functions available to expressions written in a
// file that lives in baseDir; relative paths given to file functions are
// resolved against baseDir, and file functions read only below the root
// of the git work tree holding baseDir (else baseDir itself).
//
// Every function is pure: there is deliberately no timestamp, uuid, env or
// anything else whose result depends on when or where it is evaluated (file
// functions read only what the template's own directory tree holds).
// A baseDir that cannot be resolved gives file functions nothing to read.
func Functions(baseDir string) map[string]function.Function {
	scope, err := newReadScope([]string{baseDir}, nil)
	if err != nil {
		scope = &readScope{}
	}
	return functions(baseDir, scope)
}

func functions(baseDir string, scope *readScope) map[string]function.Function {
	base := baseFunctions(baseDir, scope)
	fns := make(map[string]function.Function, len(base)+1)
	for name, f := range base {
		fns[name] = f
	}
	// Templates rendered by templatefile see the same table minus
	// templatefile itself, which rules out recursion.
	fns["templatefile"] = makeTemplateFileFunc(baseDir, scope, base)
	return fns
}

func baseFunctions(baseDir string, scope *readScope) map[string]function.Function {
	return map[string]function.Function{
		// Numbers.
		"abs":      stdlib.AbsoluteFunc,
		"ceil":     stdlib.CeilFunc,
		"floor":    stdlib.FloorFunc,
		"log":      stdlib.LogFunc,
		"max":      stdlib.MaxFunc,
		"min":      stdlib.MinFunc,
		"parseint": stdlib.ParseIntFunc,
		"pow":      stdlib.PowFunc,
		"signum":   stdlib.SignumFunc,
		"sum":      sumFunc,

		// Strings.
		"chomp":      stdlib.ChompFunc,
		"endswith":   endsWithFunc,
		"format":     stdlib.FormatFunc,
		"formatdate": stdlib.FormatDateFunc,
		"formatlist": stdlib.FormatListFunc,
		"indent":     stdlib.IndentFunc,
		"join":       stdlib.JoinFunc,
		"lower":      stdlib.LowerFunc,
		"regex":      stdlib.RegexFunc,
		"regexall":   stdlib.RegexAllFunc,
		"replace":    replaceFunc,
		"split":      stdlib.SplitFunc,
		"startswith": startsWithFunc,
		"strrev":     stdlib.ReverseFunc,
		"substr":     stdlib.SubstrFunc,
		"title":      stdlib.TitleFunc,
		"trim":       stdlib.TrimFunc,
		"trimprefix": stdlib.TrimPrefixFunc,
		"trimspace":  stdlib.TrimSpaceFunc,
		"trimsuffix": stdlib.TrimSuffixFunc,
		"upper":      stdlib.UpperFunc,

		// Collections.
		"alltrue":         allTrueFunc,
		"anytrue":         anyTrueFunc,
		"chunklist":       stdlib.ChunklistFunc,
		"coalesce":        coalesceFunc,
		"coalescelist":    stdlib.CoalesceListFunc,
		"compact":         stdlib.CompactFunc,
		"concat":          stdlib.ConcatFunc,
		"contains":        stdlib.ContainsFunc,
		"distinct":        stdlib.DistinctFunc,
		"element":         stdlib.ElementFunc,
		"flatten":         stdlib.FlattenFunc,
		"keys":            stdlib.KeysFunc,
		"length":          lengthFunc,
		"lookup":          stdlib.LookupFunc,
		"merge":           stdlib.MergeFunc,
		"one":             oneFunc,
		"range":           stdlib.RangeFunc,
		"reverse":         stdlib.ReverseListFunc,
		"setintersection": stdlib.SetIntersectionFunc,
		"setproduct":      stdlib.SetProductFunc,
		"setsubtract":     stdlib.SetSubtractFunc,
		"setunion":        stdlib.SetUnionFunc,
		"slice":           stdlib.SliceFunc,
		"sort":            stdlib.SortFunc,
		"values":          stdlib.ValuesFunc,
		"zipmap":          stdlib.ZipmapFunc,

		// Type conversions.
		"tobool":   stdlib.MakeToFunc(cty.Bool),
		"tolist":   stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap":    stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)),
		"tonumber": stdlib.MakeToFunc(cty.Number),
		"toset":    stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
		"tostring": stdlib.MakeToFunc(cty.String),

		// Encodings.
		"base64decode": base64DecodeFunc,
		"base64encode": base64EncodeFunc,
		"csvdecode":    stdlib.CSVDecodeFunc,
		"jsondecode":   stdlib.JSONDecodeFunc,
		"jsonencode":   stdlib.JSONEncodeFunc,
		"urlencode":    urlEncodeFunc,

		// Hashes of the UTF-8 bytes of a string.
		"base64sha256": makeHashFunc(sha256.New, base64.StdEncoding.EncodeToString),
		"md5":          makeHashFunc(md5.New, hex.EncodeToString),
		"sha1":         makeHashFunc(sha1.New, hex.EncodeToString),
		"sha256":       makeHashFunc(sha256.New, hex.EncodeToString),
		"sha512":       makeHashFunc(sha512.New, hex.EncodeToString),

		// Error handling.
		"can": tryfunc.CanFunc,
		"try": tryfunc.TryFunc,

		// Paths and files.
		"abspath":    makeAbsPathFunc(baseDir),
		"basename":   stringFunc(filepath.Base),
		"dirname":    stringFunc(filepath.Dir),
		"file":       makeFileFunc(baseDir, scope),
		"filebase64": makeFileBase64Func(baseDir, scope),
		"fileexists": makeFileExistsFunc(baseDir, scope),
	}
}

// stringFunc wraps a pure string-to-string Go function.
func stringFunc(fn func(string) string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "str", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(fn(args[0].AsString())), nil
		},
	})
}

// replaceFunc follows Terraform: a pattern wrapped in slashes is a regular
// expression (replacement may use $1 etc.), anything else a literal string.
var replaceFunc = function.New(&function.Spec{
	Description: "Replaces each occurrence of substr in str; substr is a regular expression if written as /pattern/.",
	Params: []function.Parameter{
		{Name: "str", Type: cty.String},
		{Name: "substr", Type: cty.String},
		{Name: "replace", Type: cty.String},
	},
	Type: function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		substr := args[1].AsString()
		if len(substr) > 1 && strings.HasPrefix(substr, "/") && strings.HasSuffix(substr, "/") {
			return stdlib.RegexReplace(args[0], cty.StringVal(substr[1:len(substr)-1]), args[2])
		}
		return stdlib.Replace(args[0], args[1], args[2])
	},
})

// coalesceFunc follows Terraform: unlike the stdlib version it skips empty
// strings as well as nulls.
var coalesceFunc = function.New(&function.Spec{
	Description: "Returns the first argument that is neither null nor an empty string.",
	VarParam: &function.Parameter{
		Name:             "vals",
		Type:             cty.DynamicPseudoType,
		AllowUnknown:     true,
		AllowDynamicType: true,
		AllowNull:        true,
	},
	Type: stdlib.CoalesceFunc.ReturnTypeForValues,
	Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
		for _, v := range args {
			if !v.IsKnown() {
				return cty.UnknownVal(retType), nil
			}
			if v.IsNull() {
				continue
			}
			v, err := convert.Convert(v, retType)
			if err != nil {
				return cty.NilVal, err
			}
			if retType == cty.String && v.RawEquals(cty.StringVal("")) {
				continue
			}
			return v, nil
		}
		return cty.NilVal, errors.New("no non-null, non-empty-string arguments")
	},
})

var startsWithFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "str", Type: cty.String}, {Name: "prefix", Type: cty.String}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.BoolVal(strings.HasPrefix(args[0].AsString(), args[1].AsString())), nil
	},
})

var endsWithFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "str", Type: cty.String}, {Name: "suffix", Type: cty.String}},
	Type:   function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.BoolVal(strings.HasSuffix(args[0].AsString(), args[1].AsString())), nil
	},
})

// lengthFunc extends the stdlib length to strings (counted in grapheme
// clusters) and objects, as Terraform does.
var lengthFunc = function.New(&function.Spec{
	Params: []function.Parameter{{
		Name:             "value",
		Type:             cty.DynamicPseudoType,
		AllowDynamicType: true,
		AllowUnknown:     true,
	}},
	Type: func(args []cty.Value) (cty.Type, error) {
		ty := args[0].Type()
		if ty == cty.String || ty == cty.DynamicPseudoType || ty.IsCollectionType() || ty.IsTupleType() || ty.IsObjectType() {
			return cty.Number, nil
		}
		return cty.NilType, errors.New("argument must be a string, a collection or a structural type")
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		ty := v.Type()
		switch {
		case ty == cty.DynamicPseudoType:
			return cty.UnknownVal(cty.Number), nil
		case ty.IsTupleType():
			return cty.NumberIntVal(int64(len(ty.TupleElementTypes()))), nil
		case ty.IsObjectType():
			return cty.NumberIntVal(int64(len(ty.AttributeTypes()))), nil
		case ty == cty.String:
			return stdlib.Strlen(v)
		default:
			return v.Length(), nil
		}
	},
})

func isSeqType(ty cty.Type) bool {
	return ty.IsListType() || ty.IsSetType() || ty.IsTupleType()
}

var sumFunc = function.New(&function.Spec{
	Description: "Returns the sum of a list, set or tuple of numbers.",
	Params:      []function.Parameter{{Name: "list", Type: cty.DynamicPseudoType}},
	Type: func(args []cty.Value) (cty.Type, error) {
		if !isSeqType(args[0].Type()) {
			return cty.NilType, errors.New("argument must be a list, set or tuple of numbers")
		}
		return cty.Number, nil
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		list := args[0]
		if !list.IsWhollyKnown() {
			return cty.UnknownVal(cty.Number), nil
		}
		if list.LengthInt() == 0 {
			return cty.NilVal, errors.New("cannot sum an empty list")
		}
		total := cty.Zero
		for it := list.ElementIterator(); it.Next(); {
			_, v := it.Element()
			if v.IsNull() {
				return cty.NilVal, errors.New("argument must not contain null values")
			}
			n, err := convert.Convert(v, cty.Number)
			if err != nil {
				return cty.NilVal, fmt.Errorf("argument must contain only numbers: %w", err)
			}
			total = total.Add(n)
		}
		return total, nil
	},
})

var oneFunc = function.New(&function.Spec{
	Description: "Returns the only element of a list, set or tuple, or null if it is empty.",
	Params:      []function.Parameter{{Name: "list", Type: cty.DynamicPseudoType}},
	Type: func(args []cty.Value) (cty.Type, error) {
		ty := args[0].Type()
		switch {
		case ty.IsListType() || ty.IsSetType():
			return ty.ElementType(), nil
		case ty.IsTupleType():
			switch elems := ty.TupleElementTypes(); len(elems) {
			case 0:
				return cty.DynamicPseudoType, nil
			case 1:
				return elems[0], nil
			}
		}
		return cty.NilType, errors.New("argument must be a list, set or tuple with zero or one elements")
	},
	Impl: func(args []cty.Value, retType cty.Type) (cty.Value, error) {
		list := args[0]
		if !list.Length().IsKnown() {
			return cty.UnknownVal(retType), nil
		}
		switch list.LengthInt() {
		case 0:
			return cty.NullVal(retType), nil
		case 1:
			it := list.ElementIterator()
			it.Next()
			_, v := it.Element()
			return v, nil
		}
		return cty.NilVal, errors.New("argument must have zero or one elements")
	},
})

var allTrueFunc = function.New(&function.Spec{
	Description: "Returns true if every element of the list is true (or the list is empty).",
	Params:      []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
	Type:        function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		for it := args[0].ElementIterator(); it.Next(); {
			_, v := it.Element()
			if !v.IsKnown() {
				return cty.UnknownVal(cty.Bool), nil
			}
			if v.IsNull() || v.False() {
				return cty.False, nil
			}
		}
		return cty.True, nil
	},
})

var anyTrueFunc = function.New(&function.Spec{
	Description: "Returns true if any element of the list is true.",
	Params:      []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
	Type:        function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		unknown := false
		for it := args[0].ElementIterator(); it.Next(); {
			_, v := it.Element()
			switch {
			case !v.IsKnown():
				unknown = true
			case !v.IsNull() && v.True():
				return cty.True, nil
			}
		}
		if unknown {
			return cty.UnknownVal(cty.Bool), nil
		}
		return cty.False, nil
	},
})

var base64EncodeFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "str", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(base64.StdEncoding.EncodeToString([]byte(args[0].AsString()))), nil
	},
})

var base64DecodeFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "str", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		b, err := base64.StdEncoding.DecodeString(args[0].AsString())
		if err != nil {
			return cty.NilVal, fmt.Errorf("decoding base64: %w", err)
		}
		if !utf8.Valid(b) {
			return cty.NilVal, errors.New("decoded base64 data is not valid UTF-8")
		}
		return cty.StringVal(string(b)), nil
	},
})

var urlEncodeFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "str", Type: cty.String}},
	Type:   function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(url.QueryEscape(args[0].AsString())), nil
	},
})

func makeHashFunc(newHash func() hash.Hash, encode func([]byte) string) function.Function {
	return function.New(&function.Spec{
		Params: []function.Parameter{{Name: "str", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			h := newHash()
			h.Write([]byte(args[0].AsString()))
			return cty.StringVal(encode(h.Sum(nil))), nil
		},
	})
}

// funcPath interprets p relative to baseDir unless it is absolute.
func funcPath(baseDir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(baseDir, p)
}

func funcReadFile(baseDir string, scope *readScope, p string) ([]byte, error) {
	b, err := scope.readFile(baseDir, p)
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", p, err)
	}
	return b, nil
}

func funcReadText(baseDir string, scope *readScope, p string) (string, error) {
	b, err := funcReadFile(baseDir, scope, p)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("contents of %q are not valid UTF-8; use filebase64 to read binary files", p)
	}
	return string(b), nil
}

func makeFileFunc(baseDir string, scope *readScope) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the contents of a UTF-8 text file.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			s, err := funcReadText(baseDir, scope, args[0].AsString())
			if err != nil {
				return cty.NilVal, err
			}
			return cty.StringVal(s), nil
		},
	})
}

func makeFileBase64Func(baseDir string, scope *readScope) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the contents of a file, base64-encoded.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			b, err := funcReadFile(baseDir, scope, args[0].AsString())
			if err != nil {
				return cty.NilVal, err
			}
			return cty.StringVal(base64.StdEncoding.EncodeToString(b)), nil
		},
	})
}

func makeFileExistsFunc(baseDir string, scope *readScope) function.Function {
	return function.New(&function.Spec{
		Description: "Returns whether a regular file exists at the path.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			real, _, err := scope.resolve(baseDir, p)
			var fi os.FileInfo
			if err == nil {
				fi, err = os.Stat(real)
			}
			switch {
			case errors.Is(err, os.ErrNotExist):
				return cty.False, nil
			case isOutside(err):
				return cty.NilVal, err
			case err != nil:
				return cty.NilVal, fmt.Errorf("checking %q: %w", p, err)
			case !fi.Mode().IsRegular():
				return cty.NilVal, fmt.Errorf("%q is not a regular file (mode %s)", p, fi.Mode())
			}
			return cty.True, nil
		},
	})
}

func makeAbsPathFunc(baseDir string) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the absolute form of a path, relative ones being taken from the file's directory.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			abs, err := filepath.Abs(funcPath(baseDir, args[0].AsString()))
			if err != nil {
				return cty.NilVal, fmt.Errorf("making %q absolute: %w", args[0].AsString(), err)
			}
			return cty.StringVal(filepath.ToSlash(abs)), nil
		},
	})
}

// makeTemplateFileFunc renders a template file with the given variables and
// the functions in fns.
func makeTemplateFileFunc(baseDir string, scope *readScope, fns map[string]function.Function) function.Function {
	return function.New(&function.Spec{
		Description: "Renders the template file at path with the given variables.",
		Params: []function.Parameter{
			{Name: "path", Type: cty.String},
			{Name: "vars", Type: cty.DynamicPseudoType},
		},
		Type: function.StaticReturnType(cty.DynamicPseudoType),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			vars, err := templateVars(args[1])
			if err != nil {
				return cty.NilVal, err
			}
			src, err := funcReadText(baseDir, scope, p)
			if err != nil {
				return cty.NilVal, err
			}
			// Diagnostics name the file as it can be found from the
			// process's working directory.
			filename := funcPath(baseDir, p)
			diags := checkNesting([]byte(src), filename, true)
			var expr hclsyntax.Expression
			if !diags.HasErrors() {
				expr, diags = hclsyntax.ParseTemplate([]byte(src), filename, hcl.InitialPos)
			}
			if diags.HasErrors() {
				return cty.NilVal, templateDiagsError(diags)
			}
			for _, tr := range expr.Variables() {
				if _, ok := vars[tr.RootName()]; !ok {
					return cty.NilVal, fmt.Errorf("%s: vars has no key %q", tr.SourceRange(), tr.RootName())
				}
			}
			val, diags := expr.Value(&hcl.EvalContext{Variables: vars, Functions: fns})
			if diags.HasErrors() {
				return cty.NilVal, templateDiagsError(diags)
			}
			return val, nil
		},
	})
}

// templateDiagsError turns template diagnostics into an error whose text ends
// without a full stop, as HCL adds one when reporting a failed call.
func templateDiagsError(diags hcl.Diagnostics) error {
	return errors.New(strings.TrimSuffix(diags.Error(), "."))
}

func templateVars(v cty.Value) (map[string]cty.Value, error) {
	ty := v.Type()
	if !ty.IsMapType() && !ty.IsObjectType() {
		return nil, fmt.Errorf("vars must be an object or a map, not %s", ty.FriendlyName())
	}
	vars := make(map[string]cty.Value)
	for it := v.ElementIterator(); it.Next(); {
		k, val := it.Element()
		name := k.AsString()
		if !hclsyntax.ValidIdentifier(name) {
			return nil, fmt.Errorf("vars key %q is not a valid identifier", name)
		}
		vars[name] = val
	}
	return vars, nil
}
