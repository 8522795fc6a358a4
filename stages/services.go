package stages

import (
	"context"
	"fmt"
	"strings"
)

// systemctlErrors are the lines in which systemctl says what failed.
func systemctlErrors(l string) bool {
	return strings.HasPrefix(l, "Failed") || strings.Contains(l, "does not exist") ||
		strings.HasPrefix(l, "Unit ") || strings.HasPrefix(l, "Invalid")
}

// runServices enables or disables each unit with the image's own
// systemctl, which works on the unit files alone when systemd is not
// running (SYSTEMD_OFFLINE=1 makes sure it never tries to reach one).
func runServices(ctx context.Context, s *Services, env *Env) error {
	if len(s.Units) == 0 {
		return nil
	}
	r, err := openRoot(env)
	if err != nil {
		return err
	}
	systemctl := r.lookPath("systemctl")
	r.close()
	if systemctl == "" {
		return fmt.Errorf("services need systemd in the image, and it has no systemctl (in %s); install systemd first", standardPath)
	}
	for _, u := range s.Units {
		if u.Name == "" || strings.HasPrefix(u.Name, "-") || strings.ContainsAny(u.Name, "/ \t\n") {
			return fmt.Errorf("%q is not a unit name", u.Name)
		}
		verb, doing := "disable", "disabling"
		if u.Enabled {
			verb, doing = "enable", "enabling"
		}
		what := fmt.Sprintf("%s unit %s: systemctl %s", doing, u.Name, verb)
		err := runInImage(ctx, env, offline, what, systemctlErrors, []string{"SYSTEMD_OFFLINE=1"}, systemctl, verb, u.Name)
		if err != nil {
			return err
		}
	}
	return nil
}
