package targets

import (
	"context"
	"errors"
	"fmt"
	"os"
)

// BuildRootFS writes the image in.Root as a partitionless ext4 file
// system to path, which must not exist: the root image of an
// instance-store cloud image (what euca-bundle-image takes), which the
// cloud attaches as a partition and boots with its own kernel and
// ramdisk. It is the root file system BuildDisk writes, with the same
// UUID (the fstab of AdaptDisk names it), sizes and reproducibility; its
// size is spec.Size less what a disk's partition table and ESP take, or
// the files plus headroom. It returns the file system's size.
func BuildRootFS(ctx context.Context, in *Input, spec *DiskSpec, path string) (size int64, err error) {
	if in.Root == "" {
		return 0, errors.New("a root file system needs the image's root as a directory (Input.Root)")
	}
	tree, err := scanTree(ctx, in.Root)
	if err != nil {
		return 0, fmt.Errorf("measuring image %q: %w", in.Image.Name, err)
	}
	lay, err := planDisk(tree, 0, 0)
	if err == nil && spec.Size > 0 {
		lay, err = planDisk(tree, 0, spec.Size+lay.size-lay.rootSize)
	}
	if err != nil {
		var small *sizeError
		if errors.As(err, &small) {
			small.image = in.Image.Name
		}
		return 0, err
	}
	stamp := tree.newest
	if in.SourceDateEpoch != nil {
		stamp = in.SourceDateEpoch.Unix()
	}
	ids := diskIDsFor(string(in.Image.ID))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
		}
	}()
	if err := f.Truncate(lay.rootSize); err != nil {
		return 0, err
	}
	w := &ext4Writer{path: path, f: f, part: DiskPartition{Number: 1, Size: lay.rootSize, FSUUID: ids.rootFS}, ids: ids,
		tree: in.Root, inodes: lay.inodes, stamp: stamp, epoch: in.SourceDateEpoch}
	if err := w.write(ctx); err != nil {
		return 0, fmt.Errorf("writing the root file system of image %q: %w", in.Image.Name, err)
	}
	return lay.rootSize, nil
}
