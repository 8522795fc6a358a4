locals {
  a = local.b # ERROR: Cycle in local values
  b = local.a
  c = image.base.name # ERROR: Image reference in a local value
  d = nosuch.thing # ERROR: Unknown variable
  e = upper(1, 2) # ERROR: Too many function arguments
  f = timestamp() # ERROR: Call to unknown function
}
image "base" {
  bootstrap "debootstrap" { suite = "bookworm" }
  description = var.nope # ERROR: Unsupported attribute
}
image "x" { # ERROR: Reference cycle between images
  bootstrap "debootstrap" { suite = "bookworm" }
  description = image.y.description
}
image "y" {
  parent = image.x
}
locals {
  names = keys(local) # ERROR: Invalid reference
}
