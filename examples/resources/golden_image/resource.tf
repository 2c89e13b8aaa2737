variable "base_image" {
  description = "Path to a bootable qcow2 or raw disk that runs cloud-init (NoCloud) and qemu-guest-agent."
  type        = string
}

resource "golden_image" "base" {
  platform = "local"
  family   = "debian-12-minimal"

  # Exactly one of path, url (+ checksum) or family.
  source {
    path = var.base_image
  }

  # Installed by cloud-init in the build VM (needs a Debian-family guest with a
  # route to a package mirror).
  packages = ["curl"]

  provision {
    files = {
      "/etc/motd" = "Debian 12 golden image, managed by Terraform.\n"
    }
    commands = ["systemctl mask apt-daily.timer apt-daily-upgrade.timer"]
    services = ["ssh"]
  }

  # Changing only tags re-tags the existing images in place (no rebuild).
  tags = {
    os   = "debian-12"
    type = "minimal"
    team = "platform"
  }

  # Every new image must pass this before it is published.
  smoke_test {
    checks   = ["boot", "cloud_init", "guest_agent", "ssh"]
    commands = ["curl --version", "grep -q golden /etc/motd"]
    timeout  = "10m"
  }

  # Keep the last 3 images; `terraform plan` lists deletions in `prune`.
  retention {
    keep = 3
  }

  # Rebuild monthly to pick up patches.
  rebuild_after = "720h"

  # Destroy leaves the images in place; "delete" removes every image of the family.
  on_destroy = "keep"

  timeouts {
    create = "60m"
    update = "60m"
  }
}

output "image" {
  value = {
    name      = golden_image.base.name
    path      = golden_image.base.image_id
    validated = golden_image.base.validated
    checks    = [for c in golden_image.base.validation.checks : "${c.name}: ${c.ok ? "ok" : "FAILED"} (${c.duration_ms} ms)"]
    prune     = golden_image.base.prune
  }
}
