package onefake

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"html"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// imageAllocate is one.image.allocate(session, template, datastore ID
// [, skip capacity check]), in the order of oned's ImageAllocateAPI:
// parse, datastore, stat, then the pool's checks (name, type, duplicate).
func (s *Server) imageAllocate(q *request) ([]any, error) {
	text, err := q.getString(1)
	if err != nil {
		return nil, err
	}
	dsID, err := q.getInt(2)
	if err != nil {
		return nil, err
	}
	if _, err := q.optBool(3); err != nil {
		return nil, err
	}
	parse := parseTemplate
	if strings.HasPrefix(strings.TrimSpace(text), "<") {
		parse = parseXMLTemplate
	}
	tmpl, err := parse(text)
	if err != nil {
		return q.failure(Internal, -1, "Parse error: "+err.Error()), nil
	}
	ds := s.datastore(dsID)
	if ds == nil {
		return q.noExists("datastore", dsID), nil
	}
	if ds.typ == dsSystem {
		return q.failure(Allocate, -1, "Error allocating a new image. New images can only be allocated in a files or image datastore."), nil
	}

	// The datastore driver's stat: PATH must name a readable file.
	path, _ := get(tmpl, "PATH")
	size, err := stat(path)
	if err != nil {
		return q.failure(Internal, -1, "Cannot parse image SIZE: "+err.Error()), nil
	}

	allocErr := func(msg string) []any {
		return q.failure(Allocate, -1, "Error allocating a new image. "+msg)
	}
	name, _ := get(tmpl, "NAME")
	if msg := invalidName(name); msg != "" {
		return allocErr(msg), nil
	}
	typeName, _ := get(tmpl, "TYPE")
	if typeName == "" {
		typeName = "OS"
	}
	typ := -1
	for i, t := range imageTypes {
		if strings.EqualFold(t, typeName) {
			typ = i
		}
	}
	if typ < 0 {
		return allocErr("Unknown type: " + typeName), nil
	}
	switch typeName := imageTypes[typ]; {
	case (typeName == "OS" || typeName == "CDROM" || typeName == "DATABLOCK") && ds.typ != dsImage:
		return allocErr("Only IMAGES of type KERNEL, RAMDISK and CONTEXT can be registered in a FILE_DS datastore"), nil
	case (typeName == "KERNEL" || typeName == "RAMDISK" || typeName == "CONTEXT") && ds.typ != dsFile:
		return allocErr("IMAGES of type KERNEL, RAMDISK and CONTEXT cannot be registered in an IMAGE_DS datastore"), nil
	}
	for _, id := range s.imageIDs() {
		if im := s.images[id]; im.uid == q.user.id && im.name == name {
			return allocErr(fmt.Sprintf("NAME is already taken by IMAGE %d.", im.id)), nil
		}
	}
	if source, _ := get(tmpl, "SOURCE"); source != "" {
		return allocErr("PATH and SOURCE cannot be both set."), nil
	}

	im := &image{
		id: s.nextImage, uid: q.user.id, gid: q.user.gid,
		uname: q.user.name, gname: groupNames[q.user.gid],
		perms: perms{1, 1, 0, 0, 0, 0, 0, 0, 0}, // umask 177
		typ:   typ, regtime: time.Now().Unix(),
		path: path, sizeMB: (size + 1<<20 - 1) >> 20,
		state: StateLocked, prevState: StateLocked, ds: ds,
	}
	erase(&tmpl, "NAME")
	erase(&tmpl, "TYPE")
	persistent := erase(&tmpl, "PERSISTENT")
	erase(&tmpl, "SIZE")
	erase(&tmpl, "PATH")
	erase(&tmpl, "SOURCE")
	erase(&tmpl, "FORMAT") // the cp driver tells it from the file
	erase(&tmpl, "DRIVER")
	im.name = name
	switch imageTypes[typ] {
	case "OS", "DATABLOCK":
		im.persistent = strings.EqualFold(persistent, "YES")
		if v, _ := get(tmpl, "DEV_PREFIX"); v == "" {
			erase(&tmpl, "DEV_PREFIX")
			tmpl = append(tmpl, attr{name: "DEV_PREFIX", value: "sd"}) // oned.conf DEFAULT_DEVICE_PREFIX
		}
	default:
		erase(&tmpl, "DEV_PREFIX")
	}
	im.template = tmpl
	s.nextImage++
	s.images[im.id] = im

	s.copies.Add(1)
	go s.copy(im.id, ds.dir, path, s.copyHook)
	return success(im.id), nil
}

// invalidName is PoolObjectSQL::name_is_valid's message, or "".
func invalidName(name string) string {
	if name == "" {
		return "Invalid NAME, it cannot be empty"
	}
	if i := strings.IndexAny(name, "&|:\\\";/'#{}$<>\t\n\v\f\r"); i >= 0 {
		return fmt.Sprintf("Invalid NAME, char '%c' is not allowed", name[i])
	}
	if len(name) > 128 {
		return "Invalid NAME, max length is 128 chars"
	}
	return ""
}

// stat is what the fs datastore driver's stat action checks.
func stat(path string) (int64, error) {
	if path == "" {
		return 0, fmt.Errorf("Missing PATH attribute.")
	}
	if !filepath.IsAbs(path) {
		return 0, fmt.Errorf("PATH %s is not an absolute path on the front-end", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("cannot read %s: %v", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a regular file", path)
	}
	return fi.Size(), nil
}

// copy is the datastore's cp action for image id: it copies path into
// dir and sets the image READY, or ERROR with the failure.
func (s *Server) copy(id int, dir, path string, hook func(int) error) {
	defer s.copies.Done()
	var err error
	if hook != nil {
		err = hook(id)
	}
	var source, format string
	if err == nil {
		source, format, err = copyFile(dir, path)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	im, ok := s.images[id]
	if !ok || im.state != StateLocked { // deleted while copying
		if source != "" {
			os.Remove(source)
		}
		return
	}
	if err != nil {
		erase(&im.template, "ERROR")
		im.template = append(im.template, attr{name: "ERROR",
			value: time.Now().Format(time.ANSIC) + " : Error copying image in the datastore: " + err.Error()})
		im.prevState, im.state = im.state, StateError
		return
	}
	im.source, im.format = source, format
	im.prevState, im.state = im.state, StateReady
}

func copyFile(dir, path string) (source, format string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	in, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer in.Close()
	var magic [4]byte
	if n, _ := io.ReadFull(in, magic[:]); n == 4 && string(magic[:]) == "QFI\xfb" {
		format = "qcow2"
	} else {
		format = "raw"
	}
	if _, err := in.Seek(0, io.SeekStart); err != nil {
		return "", "", err
	}
	var name [16]byte
	rand.Read(name[:])
	source = filepath.Join(dir, hex.EncodeToString(name[:]))
	out, err := os.Create(source)
	if err != nil {
		return "", "", err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(source)
		return "", "", err
	}
	if err := out.Close(); err != nil {
		os.Remove(source)
		return "", "", err
	}
	return source, format, nil
}

// imageInfo is one.image.info(session, ID [, decrypt]).
func (s *Server) imageInfo(q *request) ([]any, error) {
	id, err := q.getInt(1)
	if err != nil {
		return nil, err
	}
	if _, err := q.optBool(2); err != nil {
		return nil, err
	}
	im, fail := s.image(q, id, "USE")
	if fail != nil {
		return fail, nil
	}
	var b strings.Builder
	im.xml(&b)
	return success(b.String()), nil
}

// image returns image id if q's user may do op on it, or the failure.
func (s *Server) image(q *request, id int, op string) (*image, []any) {
	im, ok := s.images[id]
	if !ok {
		return nil, q.noExists("image", id)
	}
	if !q.user.can(op, im.uid, im.gid, im.perms) {
		return nil, q.notAuthorized(op, "IMAGE", id)
	}
	return im, nil
}

// imageEnable is one.image.enable(session, ID, enable), with
// ImageManager::enable_image's state table.
func (s *Server) imageEnable(q *request) ([]any, error) {
	id, err := q.getInt(1)
	if err != nil {
		return nil, err
	}
	enable, err := q.getBool(2)
	if err != nil {
		return nil, err
	}
	im, fail := s.image(q, id, "MANAGE")
	if fail != nil {
		return fail, nil
	}
	verb := "disable"
	if enable {
		verb = "enable"
	}
	switch {
	case enable && im.state == StateDisabled, enable && im.state == StateError:
		im.prevState, im.state = im.state, StateReady
	case !enable && (im.state == StateReady || im.state == StateError):
		im.prevState, im.state = im.state, StateDisabled
	case enable && im.state == StateReady, !enable && im.state == StateDisabled:
	default:
		return q.failure(Internal, id, fmt.Sprintf("Could not %s image: Image cannot be in state %s.", verb, StateName(im.state))), nil
	}
	return success(id), nil
}

// imageChmod is one.image.chmod(session, ID, nine bits of -1, 0 or 1).
func (s *Server) imageChmod(q *request) ([]any, error) {
	id, err := q.getInt(1)
	if err != nil {
		return nil, err
	}
	var bits perms
	for i := range bits {
		if bits[i], err = q.getInt(2 + i); err != nil {
			return nil, err
		}
	}
	im, ok := s.images[id]
	if !ok {
		return q.noExists("image", id), nil
	}
	// Admin bits equal to the current ones are no change (SharedAPI::chmod).
	op := "MANAGE"
	for _, i := range []int{2, 5, 8} {
		if bits[i] != -1 && bits[i] != im.perms[i] {
			op = "ADMIN"
		}
	}
	if !q.user.can(op, im.uid, im.gid, im.perms) {
		return q.notAuthorized(op, "IMAGE", id), nil
	}
	for _, b := range bits {
		if b < -1 || b > 1 {
			return q.failure(Internal, -1, "New permission values must be -1, 0 or 1"), nil
		}
	}
	for i, b := range bits {
		if b != -1 {
			im.perms[i] = b
		}
	}
	return success(id), nil
}

// imageDelete is one.image.delete(session, ID [, force]), after
// ImageAPI::del_image and ImageManager::delete_image: an image with a
// SOURCE goes to DELETE while the datastore removes it.
func (s *Server) imageDelete(q *request) ([]any, error) {
	id, err := q.getInt(1)
	if err != nil {
		return nil, err
	}
	if _, err := q.optBool(2); err != nil {
		return nil, err
	}
	im, fail := s.image(q, id, "MANAGE")
	if fail != nil {
		return fail, nil
	}
	switch im.state {
	case StateUsed, StateUsedPers, StateLockedUsed, StateLockedUsedPers, StateClone:
		return q.failure(Internal, id, "Cannot delete image: it is in state "+StateName(im.state)+"."), nil
	}
	if im.source == "" {
		delete(s.images, id)
		return success(id), nil
	}
	im.prevState, im.state = im.state, StateDelete
	source := im.source
	s.copies.Add(1)
	go func() { // the datastore's rm action
		defer s.copies.Done()
		os.Remove(source)
		s.mu.Lock()
		delete(s.images, id)
		s.mu.Unlock()
	}()
	return success(id), nil
}

// imagePoolInfo is one.imagepool.info(session, filter, start, end).
func (s *Server) imagePoolInfo(q *request) ([]any, error) {
	filter, err := q.getInt(1)
	if err != nil {
		return nil, err
	}
	start, err := q.getInt(2)
	if err != nil {
		return nil, err
	}
	end, err := q.getInt(3)
	if err != nil {
		return nil, err
	}
	if filter < -4 {
		return q.failure(RPCAPI, -1, "Incorrect filter_flag."), nil
	}
	var b strings.Builder
	b.WriteString("<IMAGE_POOL>")
	offset, n := 0, 0
	for _, id := range s.imageIDs() {
		im := s.images[id]
		var mine bool
		switch {
		case filter == -4:
			mine = im.gid == q.user.gid
		case filter == -3:
			mine = im.uid == q.user.id
		case filter == -2:
			mine = q.user.can("USE", im.uid, im.gid, im.perms)
		case filter == -1:
			mine = im.uid == q.user.id || im.gid == q.user.gid
		default:
			mine = im.uid == filter && q.user.can("USE", im.uid, im.gid, im.perms)
		}
		if !mine {
			continue
		}
		if end >= -1 { // a range of IDs
			if start >= 0 && id < start || end >= 0 && id > end {
				continue
			}
		} else { // a page: start is the offset, -end the size
			offset++
			if offset <= start || n >= -end {
				continue
			}
		}
		n++
		im.xml(&b)
	}
	b.WriteString("</IMAGE_POOL>")
	return success(b.String()), nil
}

func (s *Server) imageIDs() []int {
	ids := make([]int, 0, len(s.images))
	for id := range s.images {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// datastorePoolInfo is one.datastorepool.info(session).
func (s *Server) datastorePoolInfo(q *request) ([]any, error) {
	var b strings.Builder
	b.WriteString("<DATASTORE_POOL>")
	for _, d := range s.datastores {
		fmt.Fprintf(&b, "<DATASTORE><ID>%d</ID><UID>0</UID><GID>0</GID><UNAME>oneadmin</UNAME><GNAME>oneadmin</GNAME><NAME>%s</NAME>", d.id, html.EscapeString(d.name))
		permsXML(&b, d.perms)
		fmt.Fprintf(&b, "<DS_MAD>%s</DS_MAD><TM_MAD>ssh</TM_MAD><BASE_PATH>%s</BASE_PATH><TYPE>%d</TYPE><DISK_TYPE>0</DISK_TYPE><STATE>0</STATE><CLUSTERS><ID>0</ID></CLUSTERS><TOTAL_MB>0</TOTAL_MB><FREE_MB>0</FREE_MB><USED_MB>0</USED_MB><IMAGES>",
			map[bool]string{true: "-", false: "fs"}[d.typ == dsSystem], html.EscapeString(d.dir), d.typ)
		for _, id := range s.imageIDs() {
			if s.images[id].ds == d {
				fmt.Fprintf(&b, "<ID>%d</ID>", id)
			}
		}
		b.WriteString("</IMAGES>")
		templateXML(&b, nil)
		b.WriteString("</DATASTORE>")
	}
	b.WriteString("</DATASTORE_POOL>")
	return success(b.String()), nil
}

// xml writes the image as oned's Image::to_xml does.
func (im *image) xml(b *strings.Builder) {
	fmt.Fprintf(b, "<IMAGE><ID>%d</ID><UID>%d</UID><GID>%d</GID><UNAME>%s</UNAME><GNAME>%s</GNAME><NAME>%s</NAME>",
		im.id, im.uid, im.gid, html.EscapeString(im.uname), html.EscapeString(im.gname), html.EscapeString(im.name))
	permsXML(b, im.perms)
	fmt.Fprintf(b, "<TYPE>%d</TYPE><DISK_TYPE>0</DISK_TYPE><PERSISTENT>%d</PERSISTENT><REGTIME>%d</REGTIME><MODTIME>0</MODTIME>",
		im.typ, map[bool]int{true: 1}[im.persistent], im.regtime)
	fmt.Fprintf(b, "<SOURCE>%s</SOURCE><PATH>%s</PATH><FORMAT>%s</FORMAT><FS></FS><SIZE>%d</SIZE><STATE>%d</STATE><PREV_STATE>%d</PREV_STATE>",
		html.EscapeString(im.source), html.EscapeString(im.path), html.EscapeString(im.format), im.sizeMB, im.state, im.prevState)
	fmt.Fprintf(b, "<RUNNING_VMS>0</RUNNING_VMS><CLONING_OPS>0</CLONING_OPS><CLONING_ID>-1</CLONING_ID><TARGET_SNAPSHOT>-1</TARGET_SNAPSHOT><DATASTORE_ID>%d</DATASTORE_ID><DATASTORE>%s</DATASTORE>",
		im.ds.id, html.EscapeString(im.ds.name))
	b.WriteString("<VMS></VMS><CLONES></CLONES><APP_CLONES></APP_CLONES>")
	templateXML(b, im.template)
	b.WriteString("<SNAPSHOTS><ALLOW_ORPHANS><![CDATA[NO]]></ALLOW_ORPHANS><CURRENT_BASE><![CDATA[-1]]></CURRENT_BASE><NEXT_SNAPSHOT><![CDATA[0]]></NEXT_SNAPSHOT></SNAPSHOTS>")
	b.WriteString("</IMAGE>")
}

func permsXML(b *strings.Builder, p perms) {
	b.WriteString("<PERMISSIONS>")
	for i, n := range []string{"OWNER_U", "OWNER_M", "OWNER_A", "GROUP_U", "GROUP_M", "GROUP_A", "OTHER_U", "OTHER_M", "OTHER_A"} {
		b.WriteString("<" + n + ">" + strconv.Itoa(p[i]) + "</" + n + ">")
	}
	b.WriteString("</PERMISSIONS>")
}
