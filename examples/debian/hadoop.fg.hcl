# hadoop: the Hadoop runtime on top of a compute node.
#
# Hadoop is not packaged in Debian and the build machines reach only Debian
# mirrors, so this image prepares everything but the distribution itself:
# Java, the hadoop user, /etc/hadoop, data directories and the environment.
# A child image adds the release tarball with a file source; see README.md.

locals {
  # bookworm ships OpenJDK 17, trixie 21.
  java_version = { bookworm = 17, trixie = 21 }[var.suite]
  java_home    = "/usr/lib/jvm/java-${local.java_version}-openjdk-amd64"

  hadoop_home = "/opt/hadoop"

  # Site configuration, one map per file; rendered by files/hadoop/site.xml.tpl.
  hadoop_site = {
    core = {
      "fs.defaultFS"   = "hdfs://${var.hadoop_master}:8020"
      "hadoop.tmp.dir" = "/var/lib/hadoop/tmp"
    }
    hdfs = {
      "dfs.replication"       = var.hdfs_replication
      "dfs.namenode.name.dir" = "file:///var/lib/hadoop/hdfs/name"
      "dfs.datanode.data.dir" = "file:///var/lib/hadoop/hdfs/data"
    }
    yarn = {
      "yarn.resourcemanager.hostname" = var.hadoop_master
      "yarn.nodemanager.aux-services" = "mapreduce_shuffle"
      "yarn.nodemanager.local-dirs"   = "/var/lib/hadoop/yarn/local"
      "yarn.nodemanager.log-dirs"     = "/var/log/hadoop/yarn"
      "yarn.nodemanager.env-whitelist" = join(",", [
        "JAVA_HOME", "HADOOP_COMMON_HOME", "HADOOP_HDFS_HOME", "HADOOP_CONF_DIR",
        "CLASSPATH_PREPEND_DISTCACHE", "HADOOP_YARN_HOME", "HADOOP_HOME", "PATH",
        "LANG", "TZ", "HADOOP_MAPRED_HOME",
      ])
    }
    mapred = {
      "mapreduce.framework.name"        = "yarn"
      "mapreduce.application.classpath" = "$HADOOP_MAPRED_HOME/share/hadoop/mapreduce/*:$HADOOP_MAPRED_HOME/share/hadoop/mapreduce/lib/*"
    }
  }
}

image "hadoop" {
  parent = image.hpc

  description = "Hadoop 3.3 runtime (Java, user, configuration, HDFS directories); the distribution comes from a child image."
  tags        = ["hadoop", "java"]
  permission  = "group:bigdata"
  labels      = { role = "hadoop", hadoop = "3.3.6" }

  packages = ["openjdk-${local.java_version}-jre-headless"]

  file "/etc/hadoop/core-site.xml" {
    content = templatefile("files/hadoop/site.xml.tpl", { properties = local.hadoop_site.core })
  }
  file "/etc/hadoop/hdfs-site.xml" {
    content = templatefile("files/hadoop/site.xml.tpl", { properties = local.hadoop_site.hdfs })
  }
  file "/etc/hadoop/yarn-site.xml" {
    content = templatefile("files/hadoop/site.xml.tpl", { properties = local.hadoop_site.yarn })
  }
  file "/etc/hadoop/mapred-site.xml" {
    content = templatefile("files/hadoop/site.xml.tpl", { properties = local.hadoop_site.mapred })
  }

  # Read by every Hadoop command and daemon (daemons do not read /etc/profile.d).
  file "/etc/hadoop/hadoop-env.sh" {
    content = <<-EOT
      export JAVA_HOME=${local.java_home}
      export HADOOP_HOME=${local.hadoop_home}
      export HADOOP_LOG_DIR=/var/log/hadoop
      export HADOOP_PID_DIR=/run/hadoop
      # Hadoop 3.3 predates JDK 17: YARN's web applications need reflective access.
      export HADOOP_OPTS="$HADOOP_OPTS --add-opens=java.base/java.lang=ALL-UNNAMED"
    EOT
  }

  file "/etc/profile.d/hadoop.sh" {
    content = <<-EOT
      export JAVA_HOME=${local.java_home}
      export HADOOP_HOME=${local.hadoop_home}
      export HADOOP_CONF_DIR=/etc/hadoop
      export PATH="$PATH:$HADOOP_HOME/bin:$HADOOP_HOME/sbin"
    EOT
  }

  # /run is empty at every boot.
  file "/etc/tmpfiles.d/hadoop.conf" {
    content = "d /run/hadoop 0755 hadoop hadoop -\n"
  }

  # A fixed uid keeps HDFS and shared file systems consistent across nodes.
  user "hadoop" {
    uid   = 1100
    home  = "/var/lib/hadoop"
    shell = "/bin/bash"
  }

  run = [
    # The DataNode refuses data directories that others can read.
    "install -d -o hadoop -g hadoop -m 0700 /var/lib/hadoop/hdfs /var/lib/hadoop/hdfs/name /var/lib/hadoop/hdfs/data",
    "install -d -o hadoop -g hadoop -m 0755 /var/lib/hadoop/tmp /var/lib/hadoop/yarn /var/lib/hadoop/yarn/local /var/log/hadoop /var/log/hadoop/yarn",
    "${local.java_home}/bin/java -version",
  ]
}
