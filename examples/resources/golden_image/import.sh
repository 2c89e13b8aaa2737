#!/bin/sh
# Adopt an existing image family that golden built.
# The ID is <platform>/<family>.
terraform import golden_image.base local/debian-12-minimal
