package stages

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/fgimg/fgimg/stages/sandbox"
	"golang.org/x/sys/unix"
)

// runCommands runs each command with /bin/sh -c inside the image, in
// order, stopping at the first that fails.
func runCommands(ctx context.Context, s *Script, env *Env) error {
	if len(s.Commands) == 0 {
		return nil
	}
	r, err := openRoot(env.Root)
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
		out := newOutputTail(env.Log)
		err := sandbox.Run(ctx, sandbox.Spec{
			Upper: env.Root, Args: []string{"/bin/sh", "-c", c},
			Stdout: out, Stderr: out, Network: s.Network,
		})
		if err != nil {
			what := "command " + strconv.Itoa(i+1) + " of " + strconv.Itoa(len(s.Commands)) + " " + strconv.Quote(c)
			return commandFailed(what, err, out, nil)
		}
	}
	return nil
}
