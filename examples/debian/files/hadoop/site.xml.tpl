<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by fgimg from hadoop.fg.hcl: change it there. -->
<configuration>
%{ for name, value in properties ~}
  <property>
    <name>${name}</name>
    <value>${value}</value>
  </property>
%{ endfor ~}
</configuration>
