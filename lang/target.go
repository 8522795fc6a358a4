package lang

// evalTarget evaluates a target block against its kind's attributes.
func (l *loader) evalTarget(raw *rawTarget, e *evaluator) *Target {
	before := len(l.diags)
	s := &scope{l: l, ctx: e.bodyCtx(raw.Dir, raw.Content), attrs: raw.Content.Attributes}
	t := &Target{Kind: raw.Kind, Name: raw.Name, DeclRange: raw.DeclRange}
	if a, ok := raw.Content.Attributes["image"]; ok {
		t.Image = l.imageRef(a, "image")
	}
	switch raw.Kind {
	case "netboot", "tar":
		t.Compression, _ = s.enum("compression", "gzip", "zstd", "none")
		if t.Compression == "" {
			t.Compression = "gzip"
		}
	case "raw", "qcow2":
		t.Boot, _ = s.enum("boot", "bios", "uefi", "hybrid", "none")
		if t.Boot == "" {
			t.Boot = "hybrid"
		}
		if size, a, ok := s.str("size"); ok {
			n, err := ParseSize(size)
			if err != nil {
				l.errorf(a.Expr.Range().Ptr(), "Invalid size", "%s.", err)
			}
			t.Size = n
		}
		t.Compress, _, _ = s.boolean("compress")
	}
	t.KernelArgs, _, _ = s.strList("kernel_args")
	if l.diags[before:].HasErrors() || t.Image == nil {
		return nil
	}
	return t
}
