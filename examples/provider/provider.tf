terraform {
  required_providers {
    golden = {
      source = "golden/golden"
    }
  }
}

# The local platform (QEMU on this machine) needs no account. Without a `local`
# block, images go to $XDG_DATA_HOME/golden (~/.local/share/golden) and the
# accelerator is chosen automatically.
provider "golden" {
  local {
    store_dir   = "/var/lib/golden" # <store_dir>/<family>/<name>.qcow2 + <name>.json
    accelerator = "auto"            # auto | kvm | tcg; auto uses KVM only when it really works
  }
}
