# An ubuntu-24.04-minimal family of snapshots on DigitalOcean: a droplet built
# from Ubuntu 24.04 with user-data, snapshotted, smoke-tested over SSH on a
# fresh droplet, published under its family name, the last 3 kept, rebuilt
# monthly.
#
# DigitalOcean's tags have no '.', so the family is `ubuntu-2404-minimal`
# (a family with a '.' fails at plan on this platform, naming `family`).
#
# Against the bundled simulator: `make sim-digitalocean` prints an endpoint
# and a token; export them as DIGITALOCEAN_API_URL and DIGITALOCEAN_TOKEN.

terraform {
  required_providers {
    golden = {
      source = "golden/golden"
    }
  }
}

variable "do_token" {
  description = "A DigitalOcean API token. Null: DIGITALOCEAN_TOKEN (or DIGITALOCEAN_ACCESS_TOKEN)."
  type        = string
  default     = null
  sensitive   = true
}

provider "golden" {
  digitalocean {
    token   = var.do_token
    region  = "nyc3"
    size    = "s-1vcpu-1gb"
    regions = ["ams3"] # transferred before publish; consumers there see validated images only
  }
}

resource "golden_image" "ubuntu" {
  platform = "digitalocean"
  family   = "ubuntu-2404-minimal"

  source {
    slug = "ubuntu-24-04-x64"
  }

  packages = ["qemu-guest-agent"]

  provision {
    files = {
      "/etc/motd" = "Golden image, built by terraform-provider-golden.\n"
    }
    commands = ["systemctl mask apt-daily.timer apt-daily-upgrade.timer"]
  }

  # DigitalOcean tags hold lower-case letters, digits, _, - and : only.
  tags = { os = "ubuntu-24-04", type = "minimal", team = "platform" }

  smoke_test {
    checks   = ["boot", "cloud_init", "guest_agent", "ssh"]
    commands = ["test -s /etc/motd", "systemctl is-enabled qemu-guest-agent"]
    timeout  = "15m"
  }

  retention {
    keep = 3
  }

  rebuild_after = "720h"

  # A build waits up to power_off_timeout (30m) for the droplet and, with
  # `regions`, up to transfer_timeout (2h) for the transfers: the default
  # create timeout (1h) is too short for both.
  timeouts {
    create = "3h"
    update = "3h"
  }
}

# Consumers pick the newest validated snapshot of the family by its id.
data "golden_latest_image" "ubuntu" {
  platform   = "digitalocean"
  family     = golden_image.ubuntu.family
  depends_on = [golden_image.ubuntu]
}

output "image_id" {
  value = data.golden_latest_image.ubuntu.image_id
}

output "image_name" {
  value = data.golden_latest_image.ubuntu.name
}

output "smoke_test" {
  value = golden_image.ubuntu.validation
}
