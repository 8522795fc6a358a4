package targets

// Spec is the hashed part of a target stage: what decides its artifacts.
// Names and the image's metadata are not part of it.
type Spec struct {
	TargetKind  string   `json:"kind"`
	Compression string   `json:"compression,omitempty"`
	Size        int64    `json:"size,omitempty"`
	Boot        string   `json:"boot,omitempty"`
	Compress    bool     `json:"compress,omitempty"`
	KernelArgs  []string `json:"kernel_args,omitempty"`
}

// Kind is the target kind, such as "qcow2".
func (s *Spec) Kind() string { return s.TargetKind }
