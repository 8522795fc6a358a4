package swstack

// Delta is how one software stack differs from another: what the second
// has that the first has not (Added), the reverse (Removed), and the
// packages both have at another version (Changed). Lists are sorted.
type Delta struct {
	Added   []Package       `json:"added,omitempty"`
	Removed []Package       `json:"removed,omitempty"`
	Changed []PackageChange `json:"changed,omitempty"`

	KernelsAdded    []string `json:"kernels_added,omitempty"`
	KernelsRemoved  []string `json:"kernels_removed,omitempty"`
	ServicesAdded   []string `json:"services_added,omitempty"`
	ServicesRemoved []string `json:"services_removed,omitempty"`
}

// PackageChange is one package at two versions; a package is the same
// one when its name and architecture are.
type PackageChange struct {
	Name string `json:"name"`
	Arch string `json:"arch,omitempty"`
	From string `json:"from"`
	To   string `json:"to"`
	// SourceFrom and SourceTo are set when the source package changed.
	SourceFrom string `json:"source_from,omitempty"`
	SourceTo   string `json:"source_to,omitempty"`
}

// Empty says whether the stacks are the same.
func (d *Delta) Empty() bool {
	return len(d.Added)+len(d.Removed)+len(d.Changed)+len(d.KernelsAdded)+len(d.KernelsRemoved)+
		len(d.ServicesAdded)+len(d.ServicesRemoved) == 0
}

// Diff returns how b differs from a. A nil stack is an empty one.
func Diff(a, b *Stack) *Delta {
	if a == nil {
		a = &Stack{}
	}
	if b == nil {
		b = &Stack{}
	}
	type key struct{ name, arch string }
	old := make(map[key]Package, len(a.Packages))
	for _, p := range a.Packages {
		old[key{p.Name, p.Arch}] = p
	}
	d := &Delta{}
	seen := make(map[key]bool, len(b.Packages))
	for _, p := range b.Packages {
		k := key{p.Name, p.Arch}
		seen[k] = true
		q, ok := old[k]
		switch {
		case !ok:
			d.Added = append(d.Added, p)
		case q.Version != p.Version || q.Source != p.Source:
			c := PackageChange{Name: p.Name, Arch: p.Arch, From: q.Version, To: p.Version}
			if q.Source != p.Source {
				c.SourceFrom, c.SourceTo = q.Source, p.Source
			}
			d.Changed = append(d.Changed, c)
		}
	}
	for _, p := range a.Packages {
		if !seen[key{p.Name, p.Arch}] {
			d.Removed = append(d.Removed, p)
		}
	}
	sortPackages(d.Added)
	sortPackages(d.Removed)
	d.KernelsAdded, d.KernelsRemoved = setDiff(a.Kernels, b.Kernels)
	d.ServicesAdded, d.ServicesRemoved = setDiff(a.Services, b.Services)
	return d
}

// setDiff returns what b has and a has not, and the reverse, each in
// the order of its list (the stack's lists are sorted).
func setDiff(a, b []string) (added, removed []string) {
	in := func(list []string) map[string]bool {
		m := make(map[string]bool, len(list))
		for _, s := range list {
			m[s] = true
		}
		return m
	}
	ina, inb := in(a), in(b)
	for _, s := range b {
		if !ina[s] {
			added = append(added, s)
		}
	}
	for _, s := range a {
		if !inb[s] {
			removed = append(removed, s)
		}
	}
	return added, removed
}
