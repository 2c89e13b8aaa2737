# Every image golden built for the family, newest first, in any status.
data "golden_images" "all" {
  platform = "local"
  family   = "debian-12-minimal"
}

# Only images that passed their smoke test.
data "golden_images" "validated" {
  platform       = "local"
  family         = "debian-12-minimal"
  validated_only = true
}

output "failed_builds" {
  value = [for i in data.golden_images.all.images : i.name if i.status == "failed"]
}

# The validated version before the newest one, e.g. for a rollback.
output "previous_validated" {
  value = try(data.golden_images.validated.images[1].image_id, null)
}
