image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
  file "/etc/hostname" {
    source = "/etc/hostname" # ERROR: Source outside the configuration
  }
  file "/etc/environment" {
    content = file("/proc/self/environ") # ERROR: Error in function call
  }
  file "/etc/sibling" {
    source = "../../../../sibling.txt" # ERROR: Source outside the configuration
  }
}
image "local" {
  from = "oci:/var/lib/images/base" # ERROR: Image source outside the configuration
}
image "tarball" {
  bootstrap "tar" {
    source = "/dev/zero" # ERROR: Source outside the configuration
  }
}
