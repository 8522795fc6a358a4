package lang

import (
	"slices"
	"testing"

	"github.com/fgimg/fgimg/internal/arch"
)

// lang imports nothing of fgimg's, so it lists the architectures it
// accepts itself: the list must be the one the from stage and the OCI
// writer translate.
func TestArchsAreTheArchTable(t *testing.T) {
	if want := arch.Names(); !slices.Equal(archs, want) {
		t.Errorf("lang accepts arch %q; internal/arch translates %q", archs, want)
	}
}
