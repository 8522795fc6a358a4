variable "suite" {
  default = "bookworm"
}

image "base" {
  bootstrap "debootstrap" {
    suite   = var.suite
    include = ["systemd-sysv", "linux-image-amd64"]
  }
  description = "Debian base"
  tags        = ["debian"]
  packages    = ["openssh-server", "sudo"]
  file "/etc/motd" {
    content = "base\n"
  }
  user "admin" {
    groups = ["sudo"]
  }
  service "ssh" {}
  run = ["apt-get clean"]
}

image "hpc" {
  parent   = image.base
  packages = ["openmpi-bin", "hwloc"]
  file "/etc/sysctl.d/60-hpc.conf" {
    content = "vm.swappiness = 10\n"
  }
}

image "hadoop" {
  parent   = image.hpc
  packages = ["openjdk-17-jre-headless"]
  labels   = { hadoop = "3.3.6" }
}

image "web" {
  parent   = image.base
  packages = ["nginx"]
  file "/etc/nginx/sites-enabled/site.conf" {
    source = "files/site.conf"
  }
  file "/var/www/site" {
    source = "files/site"
  }
  service "nginx" {}
}

# Same content as hpc under another name: its stages are hpc's.
image "hpc-copy" {
  parent      = image.base
  description = "a copy"
  packages    = ["hwloc", "openmpi-bin"]
  file "/etc/sysctl.d/60-hpc.conf" {
    content = "vm.swappiness = 10\n"
  }
}

image "alpine" {
  from = "docker://alpine:3.20"
  run  = ["apk add --no-cache curl"]
}
