package rootfs

// SetNoOpenat2 makes Open use the step-by-step walk (true) or openat2.
func SetNoOpenat2(v bool) { noOpenat2.Store(v) }
