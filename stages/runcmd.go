package stages

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"
)

// runCommands runs each command with /bin/sh -c inside the image, in
// order, stopping at the first that fails.
func runCommands(ctx context.Context, s *Script, env *Env) error {
	if len(s.Commands) == 0 {
		return nil
	}
	r, err := openRoot(env)
	if err != nil {
		return err
	}
	_, err = r.stat("/bin/sh")
	r.close()
	if errors.Is(err, unix.ENOENT) {
		return errors.New("the image has no /bin/sh to run commands with")
	}
	for i, c := range s.Commands {
		fmt.Fprintf(env.Log, "+ %s\n", c)
		what := "command " + strconv.Itoa(i+1) + " of " + strconv.Itoa(len(s.Commands)) + " " + strconv.Quote(c)
		if err := inImage(ctx, env, network(s.Network), what, nil, nil, "/bin/sh", "-c", c); err != nil {
			return err
		}
	}
	return nil
}
