variable "suite" {
  type    = string
  default = "sid" # ERROR: Invalid value for variable
  validation {
    condition     = contains(["bookworm", "trixie"], var.suite)
    error_message = "The suite must be bookworm or trixie."
  }
}
variable "required" { # ERROR: No value for required variable
  type = string
}
variable "count" {
  type    = number
  default = "many" # ERROR: Invalid value for variable
}
variable "Bad" { # ERROR: Invalid variable name
  default = 1
}
variable "bad_type" {
  type = strang # ERROR: Invalid type specification
}
