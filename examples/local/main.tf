# Quick start on the local platform: QEMU on this machine, no cloud account.
# `make demo` runs this twice: the first apply builds, smoke-tests and
# publishes debian-12-demo-<date>-001; the second (a new revision) builds the
# next one and, with keep = 1, prunes the first: `terraform plan` shows it.

terraform {
  required_providers {
    golden = { source = "golden/golden" }
  }
}

variable "base_image" {
  description = "A self-booting Debian 12 qcow2 (scripts/make-base-image.sh prints one)."
  type        = string
}

variable "revision" {
  description = "Bump to build a new version."
  type        = string
  default     = "1"
}

provider "golden" {
  # local { store_dir = "..." }  # default: $XDG_DATA_HOME/golden
}

resource "golden_image" "debian" {
  platform = "local"
  family   = "debian-12-demo"

  source {
    path = var.base_image
  }

  provision {
    files = {
      "/etc/motd" = "Built by terraform-provider-golden, revision ${var.revision}.\n"
    }
    commands = ["echo ${var.revision} > /etc/golden-revision"]
    services = ["ssh"]
  }

  tags = {
    os   = "debian-12"
    type = "minimal"
  }

  smoke_test {
    checks   = ["boot", "cloud_init", "guest_agent", "ssh"]
    commands = ["grep -q terraform-provider-golden /etc/motd"]
    timeout  = "15m"
  }

  retention {
    keep = 1
  }

  triggers = {
    revision = var.revision
  }
}

data "golden_latest_image" "debian" {
  platform   = "local"
  family     = golden_image.debian.family
  depends_on = [golden_image.debian]
}

output "image" {
  value = {
    name      = golden_image.debian.name
    path      = golden_image.debian.image_id
    validated = golden_image.debian.validated
    checks    = [for c in golden_image.debian.validation.checks : "${c.name}: ${c.ok ? "ok" : "FAILED"} (${c.duration_ms} ms)"]
    pruned    = golden_image.debian.prune
  }
}

# What the rebuild changed in the image's Debian packages (null for the first).
output "packages_changed" {
  value = golden_image.debian.packages_changed
}

output "latest_validated" {
  value = data.golden_latest_image.debian.name
}
