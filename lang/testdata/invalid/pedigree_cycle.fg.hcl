image "a" {
  parent = image.c
}
image "b" {
  parent = image.a # ERROR: Pedigree cycle
}
image "c" {
  parent = image.b
}
image "ok" {
  bootstrap "debootstrap" { suite = "bookworm" }
}
image "self" {
  parent = image.self # ERROR: Pedigree cycle
}
