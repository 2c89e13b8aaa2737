# A debian-12-minimal family of Compute Engine images: an instance built from
# Google's Debian 12 image with a startup script (Google's Debian images have
# no cloud-init), imaged once golden stopped it, smoke-tested over the
# serial port on a fresh instance, added to the GCE image family of the same
# name only once it passed, the last 3 kept, rebuilt monthly.
#
# GCE image names are RFC 1035, so a family has no '.' on this platform.
#
# Against the bundled simulator: see README.md (`make sim-gcp`).

terraform {
  required_providers {
    golden = {
      source = "golden/golden"
    }
  }
}

variable "project" {
  description = "The project that holds the images. Null: GOOGLE_PROJECT, GOOGLE_CLOUD_PROJECT, or the key's project_id."
  type        = string
  default     = null
}

variable "zone" {
  description = "The zone builds and smoke tests run in. Null: GOOGLE_ZONE."
  type        = string
  default     = null
}

variable "credentials_file" {
  description = "Path of a service-account key (JSON). Null: GOOGLE_CREDENTIALS, else application-default credentials."
  type        = string
  default     = null
  sensitive   = true
}

variable "api_endpoint" {
  description = "The Compute Engine API root. Null: https://compute.googleapis.com (set it for the simulator)."
  type        = string
  default     = null
}

provider "golden" {
  gcp {
    project      = var.project
    zone         = var.zone
    credentials  = var.credentials_file == null ? null : file(var.credentials_file)
    api_endpoint = var.api_endpoint
    machine_type = "e2-small"
    network      = "global/networks/default"
    external_ip  = true # apt reaches deb.debian.org without Cloud NAT
  }
}

resource "golden_image" "debian" {
  platform = "gcp"
  family   = "debian-12-minimal"

  source {
    image = "projects/debian-cloud/global/images/family/debian-12"
  }

  packages = ["curl"]

  provision {
    files = {
      "/etc/motd" = "Golden image, built by terraform-provider-golden.\n"
    }
    commands = ["systemctl mask apt-daily.timer apt-daily-upgrade.timer"]
  }

  # GCE label values hold lower-case letters, digits, _ and - only.
  tags = { os = "debian-12", type = "minimal", team = "platform" }

  smoke_test {
    # Google's Debian images have neither cloud-init nor qemu-guest-agent
    # (GCE has no channel to it), so only boot and ssh are checked, plus
    # these commands, all inside the guest and reported on the serial port.
    checks   = ["boot", "ssh"]
    commands = ["test -s /etc/motd", "curl --version"]
    timeout  = "15m"
  }

  retention {
    keep = 3
  }

  rebuild_after = "720h" # picks up the newest debian-12 image monthly

  # A build waits up to power_off_timeout (30m) for the instance to provision
  # and report, then for GCE to make the image (minutes), then boots the
  # smoke test: the default create timeout (1h) leaves little room.
  timeouts {
    create = "2h"
    update = "2h"
  }
}

# Consumers pick the newest validated image of the family. Google's own lookup
# agrees: projects/<project>/global/images/family/debian-12-minimal.
data "golden_latest_image" "debian" {
  platform   = "gcp"
  family     = golden_image.debian.family
  depends_on = [golden_image.debian]
}

output "image_id" {
  value = data.golden_latest_image.debian.image_id
}

output "image_name" {
  value = data.golden_latest_image.debian.name
}

output "smoke_test" {
  value = golden_image.debian.validation
}
