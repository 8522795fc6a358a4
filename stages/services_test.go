package stages

import (
	"strings"
	"testing"
)

func TestServicesNeedSystemctl(t *testing.T) {
	root := busyboxRoot(t)
	_, err := runStage(t, &Services{Units: []Unit{{Name: "ssh", Enabled: true}}}, root)
	want := "services stage: services need systemd in the image, and it has no systemctl"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want %q", err, want)
	}
}
