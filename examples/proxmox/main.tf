# An ubuntu-24.04-minimal family of templates on Proxmox VE: built from a base
# template through the QEMU guest agent, smoke-tested on a linked clone,
# published under its family name, the last 3 kept, rebuilt monthly.
#
# Against the bundled simulator: see README.md
# (`terraform apply -var source_template=debian-12-base`).

terraform {
  required_providers {
    golden = {
      source = "golden/golden"
    }
  }
}

variable "pve_endpoint" {
  description = "PVE API URL, e.g. https://pve.example.com:8006. Null: PROXMOX_VE_ENDPOINT."
  type        = string
  default     = null
}

variable "pve_api_token" {
  description = "USER@REALM!TOKENID=SECRET. Null: PROXMOX_VE_API_TOKEN."
  type        = string
  default     = null
  sensitive   = true
}

variable "pve_insecure" {
  description = "Accept PVE's self-signed certificate. Null: PROXMOX_VE_INSECURE."
  type        = bool
  default     = null
}

variable "source_template" {
  description = "An existing template that runs qemu-guest-agent and cloud-init."
  type        = string
  default     = "ubuntu-2404-base"
}

variable "cloud_image_sha256" {
  description = "\"sha256:<64 hex digits>\" of the cloud image, for a source.url build (see the comment in golden_image.ubuntu)."
  type        = string
  default     = null
}

provider "golden" {
  proxmox {
    endpoint  = var.pve_endpoint
    api_token = var.pve_api_token
    insecure  = var.pve_insecure

    node          = "pve"           # builds and holds the templates
    storage       = "local-lvm"     # candidate and template disks (content: images)
    vmid_range    = "900000-999999" # ids for candidates and smoke-test clones
    agent_timeout = "5m"            # first boot until the guest agent answers
  }
}

resource "golden_image" "ubuntu" {
  platform = "proxmox"
  family   = "ubuntu-24.04-minimal"

  # The build runs entirely through the guest agent, so the source must already
  # run qemu-guest-agent and cloud-init. A cloud image url works too, but only
  # for an image that ships the agent: Ubuntu's cloud image has cloud-init but
  # not qemu-guest-agent, so its build would wait agent_timeout and fail. Bake
  # the agent in first (virt-customize --install qemu-guest-agent), or build a
  # template like "ubuntu-2404-base" once and clone that, as here. A url source:
  #
  #   source {
  #     url      = "https://cloud-images.ubuntu.com/releases/24.04/release/ubuntu-24.04-server-cloudimg-amd64.img"
  #     checksum = var.cloud_image_sha256
  #   }
  #
  # PVE downloads it itself, once per checksum, into the provider's
  # import_storage (default "local"), which must allow content "import" (PVE >= 8.4).
  source {
    template = var.source_template # or: vm_id = 9000
  }

  # Installed with apt-get through the guest agent; already present in the
  # source, they are listed so the build fails if they ever go missing.
  packages = ["qemu-guest-agent", "cloud-init"]

  provision {
    files = {
      "/etc/golden-release" = "ubuntu-24.04-minimal, built by terraform-provider-golden\n"
    }
    commands = [
      "systemctl mask apt-daily.timer apt-daily-upgrade.timer",
    ]
  }

  # PVE tags: os.ubuntu-24.04, type.minimal (plus golden's own).
  tags = {
    os   = "ubuntu-24.04"
    type = "minimal"
  }

  # Runs on a linked clone with a throwaway user and key, through the agent.
  smoke_test {
    checks = ["boot", "cloud_init", "guest_agent", "ssh"]
    commands = [
      "systemctl is-active qemu-guest-agent",
      "test -s /etc/golden-release",
    ]
    timeout = "10m"
  }

  # Keep the last 3 templates. A template with linked clones is never deleted:
  # the plan warns "Image <name> Kept" and says which VMs use it.
  retention {
    keep = 3
  }

  # Rebuild monthly for patches.
  rebuild_after = "720h"
}

# The newest validated template, as other configurations would find it.
data "golden_latest_image" "ubuntu" {
  platform   = "proxmox"
  family     = golden_image.ubuntu.family
  depends_on = [golden_image.ubuntu]
}

output "template" {
  value = {
    name  = data.golden_latest_image.ubuntu.name
    vm_id = data.golden_latest_image.ubuntu.image_id # the template's VM id
  }
}

# Cloning a VM from it with bpg/proxmox (provider "proxmox"):
#
#   resource "proxmox_virtual_environment_vm" "web" {
#     name      = "web-1"
#     node_name = "pve"
#
#     clone {
#       vm_id = tonumber(data.golden_latest_image.ubuntu.image_id)
#       full  = true # a linked clone (full = false) keeps this template from being pruned
#     }
#   }
