image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
  user "Admin" { # ERROR: Invalid user name
  }
  user "alice" {
    uid   = -1 # ERROR: Invalid value for "uid"
    shell = "bash" # ERROR: Invalid shell
  }
  user "bob" {
    uid = 1.5 # ERROR: Invalid value for "uid"
  }
  service "ssh" {
    enabled = "maybe" # ERROR: Invalid value for "enabled"
  }
  service "ssh.service" { # ERROR: Duplicate service
  }
  packages = ["vim", "bad name"] # ERROR: Invalid package name
}
