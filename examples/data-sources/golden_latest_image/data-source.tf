# The newest image of the family that passed its smoke test
# (validated_only defaults to true).
data "golden_latest_image" "base" {
  platform = "local"
  family   = "debian-12-minimal"
}

output "base_image" {
  value = {
    name         = data.golden_latest_image.base.name
    path         = data.golden_latest_image.base.image_id # qcow2 file on the local platform
    validated_at = data.golden_latest_image.base.validated_at
  }
}
