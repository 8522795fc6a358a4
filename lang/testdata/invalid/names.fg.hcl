image "Base" { # ERROR: Invalid image name
  bootstrap "debootstrap" { suite = "bookworm" }
}
image "dup" {
  bootstrap "debootstrap" { suite = "bookworm" }
}
image "dup" { # ERROR: Duplicate image name
  bootstrap "debootstrap" { suite = "bookworm" }
}
target "tar" "t" { image = image.dup }
target "oci" "t" { image = image.dup } # ERROR: Duplicate target name
image "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" { # ERROR: Name too long
  bootstrap "debootstrap" { suite = "bookworm" }
}
target "tar" "ttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt" { image = image.dup } # ERROR: Name too long
