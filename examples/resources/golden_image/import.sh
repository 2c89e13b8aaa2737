#!/bin/sh
# Adopt an existing image family that golden built.
# The ID is <platform>/<family>.
terraform import golden_image.base local/debian-12-minimal

# On Proxmox VE: the family's templates, found by their golden metadata.
terraform import golden_image.ubuntu proxmox/ubuntu-24.04-minimal

# On Google Compute Engine: the family's images, found by their golden labels.
terraform import golden_image.debian gcp/debian-12-minimal
