# Inputs shared by every image in this directory. Override them with
# -var, -var-file, an *.auto.fgvars.hcl file or FGIMG_VAR_<name>.

variable "suite" {
  type        = string
  default     = "bookworm"
  description = "Debian suite to bootstrap."
  validation {
    condition     = contains(["bookworm", "trixie"], var.suite)
    error_message = "The suite must be bookworm or trixie."
  }
}

variable "mirror" {
  type        = string
  default     = "http://deb.debian.org/debian"
  description = "Debian archive to bootstrap and install from (point it at a local mirror or apt cache)."
}

variable "security_mirror" {
  type        = string
  default     = "http://deb.debian.org/debian-security"
  description = "Debian security archive written into the images' sources.list."
}

variable "admin_ssh_keys" {
  type        = list(string)
  default     = []
  description = "Public keys for the admin user, in addition to keys/admin.pub."
}

variable "hadoop_master" {
  type        = string
  default     = "hadoop-master"
  description = "Host name of the node that runs the HDFS NameNode and the YARN ResourceManager."
}

variable "hdfs_replication" {
  type        = number
  default     = 3
  description = "Number of copies HDFS keeps of each block."
  validation {
    condition     = var.hdfs_replication >= 1
    error_message = "The HDFS replication factor must be at least 1."
  }
}

locals {
  os = { bookworm = "debian-12", trixie = "debian-13" }[var.suite]

  # Kernel log and login prompt on screen and serial port (boot checks read ttyS0).
  kernel_args = ["console=tty0", "console=ttyS0,115200"]

  labels = {
    site       = "testbed"
    managed-by = "fgimg"
  }
}
