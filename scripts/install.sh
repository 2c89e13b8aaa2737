#!/usr/bin/env bash
# Installs a provider binary where `terraform init` (and `tofu init`) find it
# with no CLI configuration: the implicit local filesystem mirror, unpacked
# layout. `make install` runs it on the release build.
#
#   scripts/install.sh BINARY
#
# Environment: VERSION (default: the package version in Cargo.toml),
# PLUGIN_DIR (default: ~/.terraform.d/plugins, which terraform and OpenTofu
# both search), OS_ARCH (default: this machine's, e.g. linux_amd64).
#
# Installs <PLUGIN_DIR>/<host>/golden/golden/<V>/<os>_<arch>/terraform-provider-golden_v<V>
# for host registry.terraform.io (what `source = "golden/golden"` means to
# terraform) and registry.opentofu.org (what it means to OpenTofu).
set -euo pipefail

NAME=golden
NAMESPACE=golden
HOSTS=(registry.terraform.io registry.opentofu.org)
ROOT=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "install.sh: $*" >&2; exit 1; }
[ $# -eq 1 ] || die "usage: scripts/install.sh BINARY"
BIN=$1
[ -x "$BIN" ] || die "$BIN is not an executable (make install builds it)"

VERSION=${VERSION:-$(awk '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' "$ROOT/Cargo.toml")}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || die "bad version '$VERSION'"
PLUGIN_DIR=${PLUGIN_DIR:-$HOME/.terraform.d/plugins}
if [ -z "${OS_ARCH:-}" ]; then
  case "$(uname -m)" in
    x86_64 | amd64) arch=amd64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "unknown machine $(uname -m): set OS_ARCH, e.g. linux_amd64" ;;
  esac
  OS_ARCH="$(uname -s | tr '[:upper:]' '[:lower:]')_$arch"
fi

for host in "${HOSTS[@]}"; do
  dir="$PLUGIN_DIR/$host/$NAMESPACE/$NAME/$VERSION/$OS_ARCH"
  mkdir -p "$dir"
  # Only our binary in the directory: terraform's h1: hash covers every file in it.
  rm -f "$dir"/*
  install -m 0755 "$BIN" "$dir/terraform-provider-${NAME}_v${VERSION}"
  echo "installed $dir/terraform-provider-${NAME}_v${VERSION}"
done

if [ "$PLUGIN_DIR" = "$HOME/.terraform.d/plugins" ]; then
  where="terraform init now finds golden $VERSION without dev_overrides or CLI config (tofu init should too: its plugin directory is the same, but no tofu has been run on it here)"
else
  where="a CLI config with provider_installation { filesystem_mirror { path = \"$PLUGIN_DIR\" } } now finds golden $VERSION"
fi
cat <<EOF

$where. Use:

terraform {
  required_providers {
    golden = {
      source  = "$NAMESPACE/$NAME"
      version = "$VERSION"
    }
  }
}

(Remove any dev_overrides for golden/golden from your CLI config, or it wins.)
EOF
