# The smallest useful configuration: a bare Debian root filesystem and a child
# that adds one file and one command. Nothing is installed beyond debootstrap's
# minbase, so it builds in a few minutes from any Debian mirror:
#
#   fgimg build -o out examples/minimal
#   fgimg build -o out -var mirror=http://apt-cache.example:3142/debian examples/minimal

variable "mirror" {
  type    = string
  default = "http://deb.debian.org/debian"
}

image "tiny" {
  bootstrap "debootstrap" {
    suite  = "bookworm"
    mirror = var.mirror
  }

  description = "Debian bookworm minbase, nothing added."
  os          = "debian-12"
  tags        = ["debian", "minimal"]
}

image "hello" {
  parent      = image.tiny
  description = "tiny with a greeting in /etc/motd."

  file "/usr/local/bin/hello" {
    mode    = "0755"
    content = <<-EOT
      #!/bin/sh
      echo "Hello from Debian $(cat /etc/debian_version), built by fgimg."
    EOT
  }

  # Files are in place before run steps start.
  run = ["/usr/local/bin/hello > /etc/motd"]
}

target "tar" "tiny-rootfs" {
  image = image.tiny
}

target "tar" "hello-rootfs" {
  image = image.hello
}
