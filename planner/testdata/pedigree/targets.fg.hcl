target "netboot" "hpc-netboot" {
  image       = image.hpc
  compression = "zstd"
  kernel_args = ["console=ttyS0"]
}

target "qcow2" "hadoop-cloud" {
  image    = image.hadoop
  size     = "8GiB"
  compress = true
}

target "raw" "base-uefi" {
  image = image.base
  boot  = "uefi"
}

target "tar" "web-rootfs" { image = image.web }
target "oci" "alpine-oci" { image = image.alpine }
