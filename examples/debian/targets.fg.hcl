# Artifacts: `fgimg build -o out` writes each one to out/<target name>/.

# Kernel and initramfs for PXE-booted compute nodes; the root lives in RAM.
target "netboot" "hpc-netboot" {
  image       = image.hpc
  compression = "zstd"
  kernel_args = concat(local.kernel_args, ["quiet"])
}

# VM disk that boots on BIOS and UEFI firmware alike.
target "qcow2" "base-cloud" {
  image       = image.base
  boot        = "hybrid"
  kernel_args = local.kernel_args
}

# Raw disk for UEFI-only machines; dd it onto a disk or a USB stick.
target "raw" "base-uefi" {
  image       = image.base
  boot        = "uefi"
  kernel_args = local.kernel_args
}

target "qcow2" "hadoop-cloud" {
  image       = image.hadoop
  size        = "8GiB" # room for HDFS blocks on the root disk
  compress    = true
  kernel_args = local.kernel_args
}

# Root filesystem tarball and OCI layout of the same image, for container hosts.
target "tar" "web-rootfs" {
  image = image.web
}

target "oci" "web-oci" {
  image = image.web
}

# The base image for OpenStack: cloud-init takes the hostname, SSH keys and
# user data from the config drive or the metadata service. `fgimg build`
# writes disk.qcow2 with register.json and register.sh beside it;
# `fgimg register` uploads it to Glance (credentials from clouds.yaml).
target "openstack" "base-openstack" {
  image       = image.base
  name        = "testbed-base"
  kernel_args = local.kernel_args
  properties  = { os_admin_user = "debian" }
}

# The same for OpenNebula: cloud-init reads the context CD-ROM (and its
# START_SCRIPT); the image goes to the "default" datastore.
target "opennebula" "base-opennebula" {
  image       = image.base
  name        = "testbed-base"
  kernel_args = local.kernel_args
}

# The compute node on an xCAT cluster scheduled by Moab: a stateless osimage
# (the kernel and rootimg.cpio.gz, the whole root in RAM, in xCAT's layout under
# /install/netboot/) and its definition for mkdef -z. `fgimg register`, run on
# the management node, copies them into place, defines the osimage and adds it
# to Moab's provisioning OS list.
target "xcat" "hpc-xcat" {
  image       = image.hpc
  name        = "hpc-compute"
  kernel_args = local.kernel_args
  moab_nodes  = ["DEFAULT"]
}

# The same compute node for Warewulf 4: `fgimg register` imports the root
# filesystem with wwctl, builds it and gives it to the "default" profile.
target "warewulf" "hpc-warewulf" {
  image   = image.hpc
  name    = "hpc-compute"
  profile = "default"
}

# The base image as an Amazon EC2 AMI: cloud-init on the Ec2 datasource,
# the ENA and NVMe drivers in the initrd. `fgimg register` stages
# disk.raw in the bucket, imports it as an EBS snapshot and registers the
# AMI, named testbed-base-<digest> (credentials and, without region, the
# region from the AWS SDK's chain).
target "ec2" "base-ec2" {
  image       = image.base
  name        = "testbed-base"
  region      = "us-east-1"
  bucket      = "testbed-images"
  kernel_args = local.kernel_args
  tags        = { project = "testbed" }
}

# The same for Eucalyptus, whose compute API is EC2's: the endpoints come
# from the cloud's eucarc (EC2_URL, S3_URL) at register time.
target "eucalyptus" "base-eucalyptus" {
  image       = image.base
  name        = "testbed-base"
  bucket      = "testbed-images"
  kernel_args = local.kernel_args
}

# And for Nimbus: the disk goes into the Cumulus repository where
# cloud-client finds it (cloud-client.sh --run --name testbed-base-<digest>);
# the repository and the user come from cloud-client's cloud.properties.
target "nimbus" "base-nimbus" {
  image       = image.base
  name        = "testbed-base"
  kernel_args = local.kernel_args
}
