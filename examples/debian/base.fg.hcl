# base: a bootable Debian server that every other image builds on.

image "base" {
  bootstrap "debootstrap" {
    suite  = var.suite
    mirror = var.mirror
    # The default, spelled out: include lists all a server adds to minbase.
    variant = "minbase"
    include = [
      # boot
      "linux-image-amd64",
      "initramfs-tools",
      "zstd", # initramfs-tools compresses with zstd when it is there
      "systemd-sysv",
      "udev",
      "kmod",
      "dbus",
      "libpam-systemd",
      # network and time
      "systemd-resolved",
      "systemd-timesyncd",
      "netbase", # /etc/services, /etc/protocols
      "iproute2",
      "iputils-ping",
      "ca-certificates",
      # remote administration
      "openssh-server",
      "sudo",
      "less",
      "nano",
    ]
  }

  description = "Bootable Debian server: systemd-networkd on DHCP, OpenSSH, an admin user with sudo."
  os          = local.os
  arch        = "amd64"
  tags        = ["debian", "server"]
  permission  = "public"
  labels      = merge(local.labels, { role = "base" })

  # debootstrap copies the build host's hostname: replace it. systemd treats
  # "localhost" as unset, so DHCP can name the machine.
  file "/etc/hostname" {
    content = "localhost\n"
  }

  # minbase has none.
  file "/etc/hosts" {
    content = <<-EOT
      127.0.0.1	localhost
      ::1		localhost ip6-localhost ip6-loopback
      ff02::1		ip6-allnodes
      ff02::2		ip6-allrouters
    EOT
  }

  # debootstrap writes only the release itself; add updates and security.
  file "/etc/apt/sources.list" {
    content = <<-EOT
      deb ${var.mirror} ${var.suite} main
      deb ${var.mirror} ${var.suite}-updates main
      deb ${var.security_mirror} ${var.suite}-security main
    EOT
  }

  file "/etc/systemd/network/80-dhcp.network" {
    content = <<-EOT
      # Every Ethernet interface asks DHCP for IPv4 and IPv6 addresses.
      [Match]
      Type=ether

      [Network]
      DHCP=yes
    EOT
  }

  # Boot is "online" once any interface is, not only when all of them are:
  # nodes often have a second NIC with no cable.
  file "/etc/systemd/system/systemd-networkd-wait-online.service.d/any.conf" {
    content = <<-EOT
      [Service]
      ExecStart=
      ExecStart=/usr/lib/systemd/systemd-networkd-wait-online --any
    EOT
  }

  # Host keys are removed at the end of the build (see run) so that no two
  # machines share them; this unit makes fresh ones on first boot.
  file "/etc/systemd/system/ssh-hostkeys.service" {
    content = <<-EOT
      [Unit]
      Description=Generate missing SSH host keys
      Before=ssh.service
      ConditionPathExistsGlob=!/etc/ssh/ssh_host_*_key

      [Service]
      Type=oneshot
      ExecStart=/usr/bin/ssh-keygen -A

      [Install]
      WantedBy=multi-user.target
    EOT
  }

  file "/etc/ssh/sshd_config.d/50-testbed.conf" {
    content = <<-EOT
      PermitRootLogin no
      PasswordAuthentication no
      KbdInteractiveAuthentication no
    EOT
  }

  # admin has no password, so sudo must not ask for one.
  file "/etc/sudoers.d/90-admin" {
    content = "admin ALL=(ALL:ALL) NOPASSWD: ALL\n"
    mode    = "0440"
  }

  file "/etc/motd" {
    content = <<-EOT

      Testbed node (${local.os}), built by fgimg from git.
      Local changes are lost when the node is redeployed.

    EOT
  }

  user "admin" {
    groups = ["sudo", "adm", "systemd-journal"]
    shell  = "/bin/bash"
    # keys/admin.pub is the operators' key: replace it with your own.
    ssh_authorized_keys = concat([trimspace(file("keys/admin.pub"))], var.admin_ssh_keys)
  }

  service "ssh" {
    enabled = true
  }
  service "ssh-hostkeys" {
    enabled = true
  }
  service "systemd-networkd" {
    enabled = true
  }
  service "systemd-resolved" {
    enabled = true
  }

  run = [
    "passwd --lock root",
    # Per-machine identity: generated again on first boot.
    "rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub",
    "truncate -s 0 /etc/machine-id && rm -f /var/lib/dbus/machine-id",
  ]
}
