image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
}
target "netbot" "a" { image = image.base } # ERROR: Unknown target kind
target "tar" "b" { image = image.base }
target "qcow2" "c" {
  image = image.base
  size  = "4GB" # ERROR: Invalid value for "size"
  boot  = "bois" # ERROR: Invalid value for "boot"
}
target "netboot" "d" {
  image       = image.base
  compression = "xz" # ERROR: Invalid value for "compression"
  size        = "1GiB" # ERROR: Unsupported argument
}
target "tar" "e" { # ERROR: Missing required argument
}
target "raw" "f" {
  image       = image.nope # ERROR: Unknown image
  kernel_args = "console=ttyS0" # ERROR: Invalid value for "kernel_args"
}
target "qcow2" "g" {
  image    = image.base
  compress = "yes please" # ERROR: Invalid value for "compress"
}
target "raw" "h" {
  image       = image.base
  size        = "15TiB" # ERROR: Disk size too large
  kernel_args = ["console=ttyS0", "quiet\ninit=/bin/sh"] # ERROR: Invalid value for "kernel_args"
}
target "raw" "i" {
  image            = image.base
  size             = "15TiB"
  allow_large_size = true
}
target "openstack" "j" {
  image      = image.base
  visibility = "secret" # ERROR: Invalid value for "visibility"
  password   = "hunter2" # ERROR: Argument not allowed in a template
  properties = { fgimg_digest = "x" } # ERROR: Invalid value for "properties"
  format     = "vmdk" # ERROR: Invalid value for "format"
}
target "opennebula" "k" {
  image      = image.base
  boot       = "none" # ERROR: Invalid value for "boot"
  dev_prefix = "/dev/vd" # ERROR: Invalid value for "dev_prefix"
  name       = "web's" # ERROR: Invalid value for "name"
  properties = { type = "CDROM" } # ERROR: Invalid value for "properties"
  one_auth   = "oneadmin:pw" # ERROR: Argument not allowed in a template
}
