# web: the testbed's status site, a sibling of hpc on the same base.

image "web" {
  parent = image.base

  description = "nginx serving the testbed status pages."
  tags        = ["web", "nginx"]
  labels      = { role = "web" }

  packages = ["nginx"]

  file "/etc/nginx/sites-available/testbed" {
    source = "files/web/testbed.conf"
  }
  file "/var/www/testbed" {
    source = "files/web/site"
  }

  service "nginx" {
    enabled = true
  }

  run = [
    "ln -sfn ../sites-available/testbed /etc/nginx/sites-enabled/testbed",
    "rm -f /etc/nginx/sites-enabled/default",
    "nginx -t", # fails the build on a broken configuration
  ]
}
