image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
  file "etc/motd" { # ERROR: Invalid file path
    content = "x"
  }
  file "/etc/a" { # ERROR: File has both content and source
    content = "x"
    source  = "files.fg.hcl"
  }
  file "/etc/b" { # ERROR: File has no content
    mode = "0644"
  }
  file "/etc/c" {
    source = "no/such/file" # ERROR: Source not found
  }
  file "/etc/d" {
    content = "x"
    mode    = "rw-r--r--" # ERROR: Invalid file mode
  }
  file "/etc/e" {
    content = "x"
    owner   = "Not A User" # ERROR: Invalid owner
  }
  file "/etc/f" {
    content = "x"
  }
  file "/etc/f" { # ERROR: Duplicate file
    content = "y"
  }
}
