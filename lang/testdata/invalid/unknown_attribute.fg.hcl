image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
  pacakges = ["vim"] # ERROR: Unsupported argument
  fiel "/etc/motd" { # ERROR: Unsupported block type
    content = "hi"
  }
}
