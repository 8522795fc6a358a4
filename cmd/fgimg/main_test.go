package main

import (
	"os"
	"testing"

	"github.com/fgimg/fgimg/internal/hpcfake"
	"github.com/fgimg/fgimg/internal/openstacktest"
	"github.com/fgimg/fgimg/stages/sandbox"
)

// TestMain lets the test binary act as fgimg itself (FGIMG_TEST_AS_MAIN=1),
// so that build tests run the real command, re-execution into a private
// mount namespace included, without building a binary first.
func TestMain(m *testing.M) {
	hpcfake.Dispatch() // the bare-metal commands, when a test put them on PATH
	sandbox.Init()
	if os.Getenv("FGIMG_TEST_AS_MAIN") == "1" {
		main()
	}
	os.Exit(openstacktest.Main(m))
}
