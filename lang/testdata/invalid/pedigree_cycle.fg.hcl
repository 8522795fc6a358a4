image "a" { # ERROR: Pedigree cycle
  parent = image.c
}
image "b" {
  parent = image.a
}
image "c" {
  parent = image.b
}
image "ok" {
  bootstrap "debootstrap" { suite = "bookworm" }
}
image "self" { # ERROR: Pedigree cycle
  parent = image.self
}
