// Package qemu boots a kernel, an initramfs or a disk image in QEMU for a
// smoke test: it watches the guest's serial console until a login prompt
// or an expected marker appears (success), the kernel panics, the guest
// stops, or time runs out, and always kills QEMU at the end.
//
// Disks are attached with -snapshot, so a boot never changes them. KVM is
// used when it works here (see CheckKVM), TCG otherwise. fgimg boot is
// built on Boot; tests of other packages can use it too:
//
//	res, err := qemu.Boot(ctx, qemu.Options{Disk: "out/vm/disk.qcow2", Console: &log})
//	if err != nil {
//		t.Fatalf("%v\n%s", err, strings.Join(res.Tail, "\n"))
//	}
package qemu
