package lang

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// funcsTestDir creates a directory of files for the file functions. It is
// not the process's working directory, so relative paths only work if they
// are resolved against it.
func funcsTestDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"hello.txt":     "hello\n",
		"bin.dat":       "\xff\xfe\x00",
		"sub/inner.txt": "inner",
		"list.tmpl":     "%{ for n in names ~}\n- ${upper(n)} ${file(\"sub/inner.txt\")}\n%{ endfor ~}\n",
		"bad.tmpl":      "line one\n${nosuch}\n",
		"recurse.tmpl":  "${templatefile(\"list.tmpl\", {names = []})}",
		"typed.tmpl":    "${n + 1}",
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func evalFuncExpr(t *testing.T, dir, src string) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	expr, diags := hclsyntax.ParseExpression([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("parsing %s: %s", src, diags)
	}
	return expr.Value(&hcl.EvalContext{Functions: Functions(dir)})
}

func TestFunctions(t *testing.T) {
	dir := funcsTestDir(t)
	strs := func(ss ...string) []cty.Value {
		vs := make([]cty.Value, len(ss))
		for i, s := range ss {
			vs[i] = cty.StringVal(s)
		}
		return vs
	}
	tests := []struct {
		expr string
		want cty.Value
	}{
		// Strings.
		{`upper("abc")`, cty.StringVal("ABC")},
		{`format("%s-%03d", "x", 7)`, cty.StringVal("x-007")},
		{`join(",", ["a", "b"])`, cty.StringVal("a,b")},
		{`split(",", "a,b")`, cty.ListVal(strs("a", "b"))},
		{`trimspace("  x \n")`, cty.StringVal("x")},
		{`trimprefix("bookworm", "book")`, cty.StringVal("worm")},
		{`title("hello world")`, cty.StringVal("Hello World")},
		{`strrev("abc")`, cty.StringVal("cba")},
		{`substr("bookworm", 4, 4)`, cty.StringVal("worm")},
		{`indent(2, "a\nb")`, cty.StringVal("a\n  b")},
		{`regex("[0-9]+", "ab12cd")`, cty.StringVal("12")},
		{`formatdate("YYYY-MM-DD", "2024-01-02T03:04:05Z")`, cty.StringVal("2024-01-02")},
		{`startswith("bookworm", "book")`, cty.True},
		{`endswith("bookworm", "book")`, cty.False},
		// replace: literal unless the pattern is wrapped in slashes.
		{`replace("a.b.c", ".", "-")`, cty.StringVal("a-b-c")},
		{`replace("a/b", "/", "-")`, cty.StringVal("a-b")},
		{`replace("v1.22.3", "/(\\d+)/", "<$1>")`, cty.StringVal("v<1>.<22>.<3>")},
		{`replace("a.b", "/./", "x")`, cty.StringVal("xxx")},
		// Numbers.
		{`max(1, 5, 3)`, cty.NumberIntVal(5)},
		{`abs(-2)`, cty.NumberIntVal(2)},
		{`parseint("ff", 16)`, cty.NumberIntVal(255)},
		{`sum([1, 2, 3.5])`, cty.NumberFloatVal(6.5)},
		// Collections.
		{`length("héllo")`, cty.NumberIntVal(5)},
		{`length([1, 2, 3])`, cty.NumberIntVal(3)},
		{`length({a = 1, b = 2})`, cty.NumberIntVal(2)},
		{`contains(["a", "b"], "b")`, cty.True},
		{`distinct(["a", "b", "a"])`, cty.ListVal(strs("a", "b"))},
		{`sort(["b", "c", "a"])`, cty.ListVal(strs("a", "b", "c"))},
		{`reverse(["a", "b"])`, cty.TupleVal(strs("b", "a"))},
		{`flatten([["a"], ["b", ["c"]]])`, cty.TupleVal(strs("a", "b", "c"))},
		{`keys(merge({b = 1}, {a = 2}))`, cty.TupleVal(strs("a", "b"))},
		{`lookup({a = "x"}, "b", "dflt")`, cty.StringVal("dflt")},
		{`coalesce(null, "", "a")`, cty.StringVal("a")},
		{`coalesce(0, 1)`, cty.NumberIntVal(0)},
		{`one(["x"])`, cty.StringVal("x")},
		{`one([])`, cty.NullVal(cty.DynamicPseudoType)},
		{`alltrue([true, false])`, cty.False},
		{`alltrue([])`, cty.True},
		{`anytrue([false, true])`, cty.True},
		{`setunion(["a"], ["b"])`, cty.SetVal(strs("a", "b"))},
		// Conversions and error handling.
		{`tostring(5)`, cty.StringVal("5")},
		{`tonumber("5")`, cty.NumberIntVal(5)},
		{`toset(["a", "a"])`, cty.SetVal(strs("a"))},
		{`try(tonumber("x"), -1)`, cty.NumberIntVal(-1)},
		{`can(tonumber("x"))`, cty.False},
		// Encodings.
		{`jsonencode({a = [1, "x"]})`, cty.StringVal(`{"a":[1,"x"]}`)},
		{`jsondecode("{\"a\": 1}").a`, cty.NumberIntVal(1)},
		{`base64encode("hello")`, cty.StringVal("aGVsbG8=")},
		{`base64decode("aGVsbG8=")`, cty.StringVal("hello")},
		{`urlencode("a b&c")`, cty.StringVal("a+b%26c")},
		{`csvdecode("a,b\n1,2\n")[0].b`, cty.StringVal("2")},
		// Hashes of the UTF-8 bytes.
		{`md5("hello")`, cty.StringVal("5d41402abc4b2a76b9719d911017c592")},
		{`md5("héllo")`, cty.StringVal("be50e8478cf24ff3595bc7307fb91b50")},
		{`sha1("hello")`, cty.StringVal("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")},
		{`sha256("hello")`, cty.StringVal("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")},
		{`sha256("héllo")`, cty.StringVal("3c48591d8d098a4538f5e013dfcf406e948eac4d3277b10bf614e295d6068179")},
		{`sha512("hello")`, cty.StringVal("9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043")},
		{`base64sha256("hello")`, cty.StringVal("LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=")},
		// Files, relative to the base directory.
		{`file("hello.txt")`, cty.StringVal("hello\n")},
		{`file("sub/../hello.txt")`, cty.StringVal("hello\n")},
		{`file("` + filepath.Join(dir, "sub", "inner.txt") + `")`, cty.StringVal("inner")},
		{`filebase64("bin.dat")`, cty.StringVal("//4A")},
		{`fileexists("hello.txt")`, cty.True},
		{`fileexists("missing.txt")`, cty.False},
		{`abspath("sub/inner.txt")`, cty.StringVal(filepath.Join(dir, "sub", "inner.txt"))},
		{`abspath("/etc/../etc/hosts")`, cty.StringVal("/etc/hosts")},
		{`basename("a/b/c.txt")`, cty.StringVal("c.txt")},
		{`dirname("a/b/c.txt")`, cty.StringVal("a/b")},
		{`templatefile("list.tmpl", {names = ["a", "b"]})`, cty.StringVal("- A inner\n- B inner\n")},
		{`templatefile("typed.tmpl", {n = 41})`, cty.NumberIntVal(42)},
	}
	for _, tt := range tests {
		got, diags := evalFuncExpr(t, dir, tt.expr)
		if diags.HasErrors() {
			t.Errorf("%s: %s", tt.expr, diags)
			continue
		}
		if !got.Type().Equals(tt.want.Type()) || !got.RawEquals(tt.want) && !got.Equals(tt.want).True() {
			t.Errorf("%s = %#v, want %#v", tt.expr, got, tt.want)
		}
	}
}

func TestFunctionsErrors(t *testing.T) {
	dir := funcsTestDir(t)
	tests := []struct {
		expr string
		want []string // substrings of the error
	}{
		{`file("missing.txt")`, []string{`"missing.txt"`, filepath.Join(dir, "missing.txt"), "no such file"}},
		{`file("bin.dat")`, []string{`"bin.dat"`, "not valid UTF-8"}},
		{`fileexists("sub")`, []string{`"sub"`, "not a regular file"}},
		{`templatefile("bad.tmpl", {})`, []string{filepath.Join(dir, "bad.tmpl") + ":2,", `"nosuch"`}},
		{`templatefile("list.tmpl", {names = 1})`, []string{filepath.Join(dir, "list.tmpl") + ":1,", "iterable"}},
		{`templatefile("recurse.tmpl", {})`, []string{"templatefile"}},
		{`templatefile("list.tmpl", "x")`, []string{"object or a map"}},
		{`sum([])`, []string{"empty"}},
		{`coalesce("", null)`, []string{"no non-null"}},
		{`one(["a", "b"])`, []string{"zero or one"}},
		{`base64decode("!!")`, []string{"base64"}},
		{`replace("a", "/(/", "b")`, []string{"error parsing regexp"}},
		// Impure functions are deliberately absent.
		{`timestamp()`, []string{"unknown function"}},
		{`uuid()`, []string{"unknown function"}},
		{`env("HOME")`, []string{"unknown function"}},
	}
	for _, tt := range tests {
		_, diags := evalFuncExpr(t, dir, tt.expr)
		if !diags.HasErrors() {
			t.Errorf("%s: no error", tt.expr)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(diags.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tt.expr, diags.Error(), w)
			}
		}
	}
}

func TestFunctionsArePure(t *testing.T) {
	fns := Functions(t.TempDir())
	for _, name := range []string{"timestamp", "plantimestamp", "uuid", "uuidv5", "env", "bcrypt", "shuffle"} {
		if _, ok := fns[name]; ok {
			t.Errorf("impure function %q is available", name)
		}
	}
	if _, ok := fns["templatefile"]; !ok {
		t.Error("templatefile is missing")
	}
}
