image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
  permission = "everyone" # ERROR: Invalid value for "permission"
  arch       = "x86_64" # ERROR: Invalid value for "arch"
  tags       = "debian" # ERROR: Invalid value for "tags"
}
image "arm" {
  bootstrap "debootstrap" { suite = "bookworm" }
  arch = "arm64"
}
image "child" {
  parent = image.arm
  arch   = "amd64" # ERROR: Architecture differs from the parent's
}
