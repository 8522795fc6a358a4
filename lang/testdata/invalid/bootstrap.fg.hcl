image "a" {
  bootstrap "debootstrapp" { # ERROR: Unknown bootstrap tool
    suite = "bookworm"
  }
}
image "b" {
  bootstrap "debootstrap" { # ERROR: Missing required argument
    mirror = "http://deb.debian.org/debian"
  }
}
image "c" {
  bootstrap "tar" {
    source = "rootfs.tar.gz" # ERROR: Source not found
    suite  = "bookworm" # ERROR: Unsupported argument
  }
}
image "d" {
  bootstrap "debootstrap" {
    suite   = "bookworm"
    variant = "minimal" # ERROR: Invalid value for "variant"
  }
}
