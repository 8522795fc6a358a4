# hpc: a stateless compute node, netbooted (see targets.fg.hcl).

image "hpc" {
  parent = image.base

  description = "Compute node: Open MPI, GCC, NUMA and topology tools, environment modules."
  tags        = ["hpc", "mpi"]
  labels      = { role = "compute" }

  packages = [
    "openmpi-bin",
    "libopenmpi-dev",
    "gcc",
    "make",
    "numactl",
    "hwloc",
    "environment-modules",
  ]

  # RDMA (InfiniBand, RoCE) pins the job's memory.
  file "/etc/security/limits.d/90-memlock.conf" {
    content = <<-EOT
      *	soft	memlock	unlimited
      *	hard	memlock	unlimited
    EOT
  }

  file "/etc/sysctl.d/60-hpc.conf" {
    content = <<-EOT
      # Keep jobs in RAM; let them allocate on remote NUMA nodes rather than reclaim.
      vm.swappiness = 10
      vm.zone_reclaim_mode = 0
      # Larger socket buffers for MPI over TCP.
      net.core.rmem_max = 16777216
      net.core.wmem_max = 16777216
      net.ipv4.tcp_rmem = 4096 87380 16777216
      net.ipv4.tcp_wmem = 4096 65536 16777216
    EOT
  }

  file "/etc/profile.d/mpi.sh" {
    content = <<-EOT
      # Open MPI from Debian: mpicc and mpirun are already on PATH.
      export MPI_HOME=/usr/lib/x86_64-linux-gnu/openmpi
      # Nodes without InfiniBand: no warning about unused fast transports.
      export OMPI_MCA_btl_base_warn_component_unused=0
    EOT
  }

  file "/etc/motd" {
    content = <<-EOT

      Compute node (${local.os}), built by fgimg from git.
      Local changes are lost when the node is redeployed.

        module avail                           software modules
        mpirun -np 2 /usr/local/bin/mpi-hello  MPI smoke test

    EOT
  }

  file "/usr/local/src/mpi-hello.c" {
    source = "files/hpc/mpi-hello.c"
  }

  # Nodes are reimaged, not upgraded in place; the timers only add jitter.
  service "apt-daily.timer" {
    enabled = false
  }
  service "apt-daily-upgrade.timer" {
    enabled = false
  }

  # Fails the build if the MPI toolchain is broken.
  run = ["mpicc -O2 -o /usr/local/bin/mpi-hello /usr/local/src/mpi-hello.c"]
}
