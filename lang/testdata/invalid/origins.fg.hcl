image "none" { # ERROR: Image has no origin
  packages = ["vim"]
}
image "two" { # ERROR: Image has several origins
  from = "docker://debian:12"
  bootstrap "debootstrap" { suite = "bookworm" }
}
image "child" {
  parent = image.bsae # ERROR: Unknown image
}
image "bad-ref" {
  parent = "base" # ERROR: Invalid parent reference
}
image "transport" {
  from = "debian:12" # ERROR: Unsupported image reference
}
image "missing-layout" {
  from = "oci:no-such-layout:latest" # ERROR: Image source not found
}
