image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
  packages = ["vim"
} # ERROR: Missing item separator
