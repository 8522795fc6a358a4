package stages

import (
	"slices"
	"strings"
	"testing"

	"github.com/fgimg/fgimg/lang"
)

// The transports lang lets a template name are the ones from links in.
func TestFromTransportsAreLangs(t *testing.T) {
	var names []string
	for _, p := range lang.Transports {
		names = append(names, strings.TrimSuffix(strings.TrimSuffix(p, "//"), ":"))
	}
	var linked []string
	for name := range fromTransports {
		linked = append(linked, name)
	}
	slices.Sort(names)
	slices.Sort(linked)
	if !slices.Equal(names, linked) {
		t.Errorf("lang accepts transports %q; the from stage links in %q", names, linked)
	}
}
