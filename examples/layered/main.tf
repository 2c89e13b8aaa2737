# Layered images: a minimal base family, and a web family built on top of the
# base's newest validated image. When the base publishes a new version, the web
# family rebuilds on it in the same apply.

terraform {
  required_providers {
    golden = {
      source = "golden/golden"
    }
  }
}

variable "base_image" {
  description = "Path to a bootable Debian 12 qcow2 that runs cloud-init (NoCloud) and qemu-guest-agent."
  type        = string
}

provider "golden" {}

resource "golden_image" "base" {
  platform = "local"
  family   = "debian-12-base"

  source {
    path = var.base_image
  }

  provision {
    commands = ["systemctl mask apt-daily.timer apt-daily-upgrade.timer"]
    services = ["ssh"]
  }

  tags = {
    os   = "debian-12"
    type = "base"
  }

  retention {
    keep = 3
  }

  rebuild_after = "720h"
}

resource "golden_image" "web" {
  platform = "local"
  family   = "debian-12-web"

  # Build on the newest validated image of the base family.
  source {
    family = golden_image.base.family
  }

  packages = ["nginx", "curl"]

  provision {
    services = ["nginx"]
  }

  smoke_test {
    commands = ["systemctl is-active nginx", "curl -fsS http://127.0.0.1/ >/dev/null"]
  }

  tags = {
    os   = "debian-12"
    type = "web"
  }

  retention {
    keep = 3
  }

  # source.family is part of the recipe, but the parent's version is not: this
  # trigger rebuilds web whenever base publishes a new image.
  triggers = {
    parent = golden_image.base.name
  }
}

output "base" {
  value = golden_image.base.name
}

output "web" {
  value = {
    name = golden_image.web.name
    path = golden_image.web.image_id
  }
}
