package stages

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// userTools are the account tools found in an image: shadow's useradd
// family, or else busybox's adduser and addgroup.
type userTools struct {
	busybox                    bool
	useradd, usermod, groupadd string // shadow
	adduser, addgroup          string // busybox
}

func findUserTools(r *root) (*userTools, error) {
	if p := r.lookPath("useradd"); p != "" {
		t := &userTools{useradd: p, usermod: r.lookPath("usermod"), groupadd: r.lookPath("groupadd")}
		if t.groupadd == "" {
			return nil, errors.New("the image has useradd but no groupadd")
		}
		return t, nil
	}
	add, group := r.lookPath("adduser"), r.lookPath("addgroup")
	if add != "" && group != "" {
		return &userTools{busybox: true, adduser: add, addgroup: group}, nil
	}
	return nil, fmt.Errorf("the image has no tool to create users: neither useradd (shadow) nor busybox adduser and addgroup in %s", standardPath)
}

// toolErrors picks the lines in which a tool names itself ("useradd: ...").
func toolErrors(toolPath string) errorLines {
	return linesWithPrefix(path.Base(toolPath) + ":")
}

func validAccountName(n string) error {
	if n == "" || strings.HasPrefix(n, "-") || strings.ContainsAny(n, ":,\n\t /") {
		return fmt.Errorf("%q is not a valid user or group name", n)
	}
	return nil
}

// runUsers creates or updates each user in spec order.
func runUsers(ctx context.Context, s *Users, env *Env) error {
	if len(s.Users) == 0 {
		return nil
	}
	r, err := openRoot(env)
	if err != nil {
		return err
	}
	defer r.close()
	tools, err := findUserTools(r)
	if err != nil {
		return err
	}
	for _, u := range s.Users {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := ensureUser(ctx, r, env, tools, u); err != nil {
			return fmt.Errorf("user %s: %w", u.Name, err)
		}
	}
	return nil
}

func ensureUser(ctx context.Context, r *root, env *Env, t *userTools, u User) error {
	if err := validAccountName(u.Name); err != nil {
		return err
	}
	for _, g := range u.Groups {
		if err := validAccountName(g); err != nil {
			return err
		}
	}
	db, err := loadIDs(r)
	if err != nil {
		return err
	}
	for _, g := range u.Groups {
		if _, ok := db.groups[g]; ok {
			continue
		}
		tool := t.groupadd
		if t.busybox {
			tool = t.addgroup
		}
		if err := runInImage(ctx, env, offline, "creating group "+g, toolErrors(tool), nil, tool, g); err != nil {
			return err
		}
	}
	if len(u.Groups) > 0 {
		if db, err = loadIDs(r); err != nil {
			return err
		}
	}

	var cmds [][]string
	if pw, ok := db.users[u.Name]; ok {
		cmds, err = modifyUserArgs(r, t, u, pw, db)
	} else {
		cmds = createUserArgs(t, u, db)
	}
	if err != nil {
		return err
	}
	for _, args := range cmds {
		what := path.Base(args[0])
		if err := runInImage(ctx, env, offline, what, toolErrors(args[0]), nil, args...); err != nil {
			return err
		}
	}

	if db, err = loadIDs(r); err != nil {
		return err
	}
	pw, ok := db.users[u.Name]
	if !ok {
		return errors.New("the user is not in the image's /etc/passwd after creating it")
	}
	if len(u.SSHAuthorizedKeys) > 0 {
		if err := writeAuthorizedKeys(r, pw, u.SSHAuthorizedKeys); err != nil {
			return fmt.Errorf("writing authorized_keys: %w", err)
		}
	}
	return nil
}

// createUserArgs returns the commands that create u.
func createUserArgs(t *userTools, u User, db *idDB) [][]string {
	_, ownGroup := db.groups[u.Name]
	if !t.busybox {
		args := []string{t.useradd, "-m"}
		if u.UID != nil {
			args = append(args, "-u", strconv.FormatInt(*u.UID, 10))
		}
		if ownGroup {
			// useradd would refuse to create the user's own group.
			args = append(args, "-g", u.Name)
		}
		if len(u.Groups) > 0 {
			args = append(args, "-G", strings.Join(u.Groups, ","))
		}
		if u.Shell != "" {
			args = append(args, "-s", u.Shell)
		}
		if u.Home != "" {
			args = append(args, "-d", u.Home)
		}
		return [][]string{append(args, u.Name)}
	}
	args := []string{t.adduser, "-D"}
	if u.UID != nil {
		args = append(args, "-u", strconv.FormatInt(*u.UID, 10))
	}
	if ownGroup {
		args = append(args, "-G", u.Name)
	}
	if u.Shell != "" {
		args = append(args, "-s", u.Shell)
	}
	if u.Home != "" {
		args = append(args, "-h", u.Home)
	}
	cmds := [][]string{append(args, u.Name)}
	for _, g := range u.Groups {
		cmds = append(cmds, []string{t.addgroup, u.Name, g})
	}
	return cmds
}

// modifyUserArgs returns the commands that bring the existing user pw in
// line with u; none when it already is.
func modifyUserArgs(r *root, t *userTools, u User, pw passwdEntry, db *idDB) ([][]string, error) {
	var missing []string
	for _, g := range u.Groups {
		ge := db.groups[g]
		if ge.gid == pw.gid && ge.name != "" {
			continue
		}
		member := false
		for _, m := range ge.members {
			member = member || m == u.Name
		}
		if !member {
			missing = append(missing, g)
		}
	}
	changeUID := u.UID != nil && *u.UID != int64(pw.uid)
	changeShell := u.Shell != "" && u.Shell != pw.shell
	changeHome := u.Home != "" && path.Clean(u.Home) != path.Clean(pw.home)

	if t.busybox {
		if changeUID || changeShell || changeHome {
			return nil, errors.New("the user exists and its uid, shell or home differ, but the image has no usermod to change them (busybox)")
		}
		var cmds [][]string
		for _, g := range missing {
			cmds = append(cmds, []string{t.addgroup, u.Name, g})
		}
		return cmds, nil
	}
	if t.usermod == "" && (changeUID || changeShell || changeHome || len(missing) > 0) {
		return nil, errors.New("the user exists and differs, but the image has no usermod to change it")
	}
	args := []string{t.usermod}
	if changeUID {
		args = append(args, "-u", strconv.FormatInt(*u.UID, 10))
	}
	if len(missing) > 0 {
		args = append(args, "-a", "-G", strings.Join(missing, ","))
	}
	if changeShell {
		args = append(args, "-s", u.Shell)
	}
	if changeHome {
		args = append(args, "-d", u.Home)
		if st, err := r.stat(pw.home); err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			args = append(args, "-m") // move the old home's content
		}
	}
	if len(args) == 1 {
		return nil, nil
	}
	return [][]string{append(args, u.Name)}, nil
}

// writeAuthorizedKeys writes HOME/.ssh/authorized_keys (0600; .ssh 0700)
// owned by the user, creating the home directory if it is missing.
func writeAuthorizedKeys(r *root, pw passwdEntry, keys []string) error {
	if !strings.HasPrefix(pw.home, "/") {
		return fmt.Errorf("the user's home %q is not an absolute path", pw.home)
	}
	homeRel, err := relPath(pw.home)
	if err != nil {
		return err
	}
	if homeRel == "" {
		return errors.New("the user's home is /")
	}
	if _, err := r.stat(pw.home); errors.Is(err, unix.ENOENT) {
		if err := writeDir(r, homeRel, 0o755, pw.uid, pw.gid); err != nil {
			return fmt.Errorf("creating home %s: %w", pw.home, err)
		}
	} else if err != nil {
		return err
	}
	if err := writeDir(r, path.Join(homeRel, ".ssh"), 0o700, pw.uid, pw.gid); err != nil {
		return err
	}
	var b strings.Builder
	for _, k := range keys {
		if k = strings.TrimSpace(k); k != "" {
			b.WriteString(k)
			b.WriteByte('\n')
		}
	}
	return r.writeFile(path.Join(pw.home, ".ssh/authorized_keys"), []byte(b.String()), 0o600, pw.uid, pw.gid)
}
