package stages

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

type bogusSpec struct{}

func (bogusSpec) Kind() string { return "bogus" }

func TestRunDispatchErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	for _, c := range []struct {
		name string
		spec Spec
		env  *Env
		want string
	}{
		{"unknown kind", bogusSpec{}, &Env{Root: dir}, `unknown stage kind "bogus" (stages.bogusSpec)`},
		{"nil spec", nil, &Env{Root: dir}, "no stage to run"},
		{"typed nil spec", (*Packages)(nil), &Env{Root: dir}, "no stage to run"},
		{"nil env", &Packages{}, nil, "packages stage: no root filesystem given"},
		{"missing root", &Files{}, &Env{Root: filepath.Join(dir, "missing")}, "files stage: stat " + filepath.Join(dir, "missing")},
		{"unknown bootstrap tool", &Bootstrap{Tool: "pacstrap"}, &Env{Root: dir}, `unknown bootstrap tool "pacstrap"`},
	} {
		_, err := Run(ctx, c.spec, c.env)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}

func TestRunEmptyPhasesDoNothing(t *testing.T) {
	dir := t.TempDir() // no package manager, no systemctl, no shell: not needed
	for _, s := range []Spec{&Packages{}, &Files{}, &Users{}, &Services{}, &Script{}} {
		if _, err := Run(context.Background(), s, &Env{Root: dir}); err != nil {
			t.Errorf("empty %s stage: %v", s.Kind(), err)
		}
	}
	if names := dirEntries(t, dir, ""); names != "" {
		t.Errorf("empty stages wrote %s", names)
	}
}

func TestRunCancelledBeforeStart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Run(ctx, &Script{Commands: []string{"true"}}, &Env{Root: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("got %v", err)
	}
}
