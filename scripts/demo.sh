#!/usr/bin/env bash
# `make demo`: a real image built, smoke-tested, published and pruned on the
# local platform, through the real terraform CLI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$HOME/.cache/golden/target}
base=$("$root/scripts/make-base-image.sh" | tail -n1)

# Our own CLI config (dev_overrides to the freshly built provider); the
# user's ~/.terraformrc is left alone.
cli=$(mktemp -d)
trap 'rm -rf "$cli"' EXIT
cat > "$cli/cli.tfrc" <<CFG
provider_installation {
  dev_overrides {
    "registry.terraform.io/golden/golden" = "$target/debug"
  }
  direct {}
}
CFG
export TF_CLI_CONFIG_FILE="$cli/cli.tfrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
cd "$root/examples/local"
rev1=$(date -u +%Y%m%dT%H%M%S)
echo "== 1/3 terraform apply: build, smoke-test and publish a new image (a few minutes under TCG)"
terraform apply -auto-approve -input=false -var "base_image=$base" -var "revision=$rev1"
echo
echo "== 2/3 terraform plan for the next revision: 'prune' lists what retention (keep = 1) will delete"
terraform plan -input=false -var "base_image=$base" -var "revision=$rev1-b" -out=demo.tfplan
echo
echo "== 3/3 terraform apply: build the next version, then prune the previous one"
terraform apply -input=false demo.tfplan
rm -f demo.tfplan
echo
echo "Images of the family (golden_images data source would show the same):"
ls -l "${XDG_DATA_HOME:-$HOME/.local/share}/golden/debian-12-demo/" || true
