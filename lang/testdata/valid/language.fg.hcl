# Every construct of LANGUAGE.md v1.
variable "suite" {
  type        = string
  default     = "bookworm"
  description = "Debian suite to bootstrap"
  validation {
    condition     = contains(["bookworm", "trixie"], var.suite)
    error_message = "The suite must be bookworm or trixie."
  }
}

variable "extra" {
  type    = list(string)
  default = []
}

locals {
  mirror = "http://deb.debian.org/debian"
  args   = concat(["console=ttyS0"], var.extra)
}

locals {
  motd = upper(format("%s worker", "hadoop"))
}

image "base" {
  bootstrap "debootstrap" {
    suite   = var.suite
    mirror  = local.mirror
    include = ["linux-image-amd64", "systemd-sysv"]
  }
  description = "Debian ${var.suite}"
  os          = "debian-12"
  tags        = ["debian"]
  labels      = { suite = var.suite, tier = "base" }
}

image "hadoop" {
  parent      = image.base
  description = "Hadoop worker on ${image.base.os}"
  tags        = ["hadoop", "java"]
  owner       = "alice"
  permission  = "group:hpc"
  labels      = { hadoop = "3.3.6", tier = "app" }
  packages    = ["openjdk-17-jre-headless"]

  file "/etc/motd" {
    content = "${local.motd}\n"
    mode    = "0644"
    owner   = "root"
    group   = "root"
  }
  file "/opt/jobs" {
    source = "files/jobs"
  }
  file "/etc/checksum" {
    content = sha256(file("keys/alice.pub"))
  }

  user "hadoop" {
    uid                 = 1100
    groups              = ["sudo"]
    shell               = "/bin/bash"
    home                = "/home/hadoop"
    ssh_authorized_keys = [file("keys/alice.pub")]
  }

  service "ssh" {
    enabled = true
  }

  run = [
    "echo 'vm.swappiness=10' > /etc/sysctl.d/60-hpc.conf",
  ]
}

image "container" {
  from = "docker://debian:12"
  arch = "arm64"
}

target "netboot" "hpc" {
  image       = image.hadoop
  compression = "zstd"
  kernel_args = local.args
}

target "qcow2" "cloud" {
  image       = image.hadoop
  size        = "4GiB"
  boot        = "hybrid"
  compress    = false
  kernel_args = ["console=ttyS0"]
}

target "raw" "vm" { image = image.hadoop }
target "oci" "container" { image = image.container }
target "tar" "rootfs" { image = image.hadoop }
