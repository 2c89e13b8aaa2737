# Sourced by the bench scripts (bench-proxmox, bench-digitalocean, bench-gcp):
# what each of them needs the same way.

# use_release_provider SCRATCH TARGET: terraform uses the release build in
# TARGET/release through dev_overrides, quietly.
use_release_provider() {
  cat > "$1/cli.tfrc" <<CFG
provider_installation {
  dev_overrides {
    "registry.terraform.io/golden/golden" = "$2/release"
  }
  direct {}
}
CFG
  export TF_CLI_CONFIG_FILE="$1/cli.tfrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
}

# local_comparison_recipe BASE STORE: the recipe the simulators' QEMU runs
# are compared with, on the local platform from the same base image.
local_comparison_recipe() {
  cat <<HCL
terraform {
  required_providers {
    golden = { source = "golden/golden" }
  }
}
provider "golden" {
  local { store_dir = "$2" }
}
resource "golden_image" "x" {
  platform = "local"
  family   = "bench-local"
  source { path = "$1" }
  provision {
    files    = { "/etc/golden-bench" = "bench" }
    commands = ["grep -qx bench /etc/golden-bench"]
  }
  smoke_test {
    checks   = ["boot", "cloud_init", "ssh"]
    commands = ["test -f /etc/golden-bench"]
    timeout  = "15m"
  }
}
HCL
}
