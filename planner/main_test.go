package planner

import (
	"os"
	"testing"

	"github.com/fgimg/fgimg/stages/sandbox"
)

// TestMain makes the test binary serve as the sandbox init: the writers
// test runs adaptation stages that run commands in the image (the cloud
// kinds' cloud-init stage).
func TestMain(m *testing.M) {
	sandbox.Init()
	os.Exit(m.Run())
}
