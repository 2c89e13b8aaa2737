#!/usr/bin/env bash
# Packages provider binaries the way a provider registry and a provider
# network mirror expect them. `make release` runs it on the release build;
# tests/e2e/install.rs runs it on the test build, so this script is what the
# E2E test checks.
#
#   scripts/release.sh OUT_DIR OS_ARCH=BINARY [OS_ARCH=BINARY ...]
#   e.g. scripts/release.sh dist linux_amd64=target/release/terraform-provider-golden
#
# Environment: VERSION (default: the package version in Cargo.toml),
# GPG_KEY_ID (when set, SHA256SUMS is signed with `gpg --detach-sign`).
#
# Writes into OUT_DIR:
#   terraform-provider-golden_<V>_<os>_<arch>.zip   one per OS_ARCH; holds the
#                                                   binary terraform-provider-golden_v<V>
#   terraform-provider-golden_<V>_manifest.json     protocol 6.0 (terraform-registry-manifest.json)
#   terraform-provider-golden_<V>_SHA256SUMS        of the zips and the manifest
#   terraform-provider-golden_<V>_SHA256SUMS.sig    only with GPG_KEY_ID
#   mirror/<host>/golden/golden/                    for host in registry.terraform.io and
#                                                   registry.opentofu.org (what `golden/golden`
#                                                   means to terraform and to tofu): the zips
#                                                   (hard links), index.json and <V>.json of the
#                                                   provider network mirror protocol, with the
#                                                   h1: and zh: hashes. The same directory is a
#                                                   filesystem mirror (packed layout) as it is.
#   <V>.hashes                                      "<os_arch> h1:... zh:..." lines, for people and tests
set -euo pipefail

NAME=golden
NAMESPACE=golden
HOSTS=(registry.terraform.io registry.opentofu.org)
ROOT=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "release.sh: $*" >&2; exit 1; }
[ $# -ge 2 ] || die "usage: scripts/release.sh OUT_DIR OS_ARCH=BINARY [OS_ARCH=BINARY ...]"
for tool in zip unzip sha256sum base64 sed sort; do
  command -v "$tool" >/dev/null || die "$tool is not on PATH (scripts/install-deps.sh installs zip and unzip)"
done

# The [package] version of Cargo.toml.
cargo_version() {
  awk '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { gsub(/.*= *"|".*/, ""); print; exit }' \
    "$ROOT/Cargo.toml"
}
VERSION=${VERSION:-$(cargo_version)}
[[ $VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$ ]] || die "bad version '$VERSION'"

OUT=$1
shift
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PREFIX="terraform-provider-${NAME}_${VERSION}"

# sha256 of stdin, as base64 of the raw digest.
sha256_base64() {
  local hex
  hex=$(sha256sum | cut -c1-64)
  # shellcheck disable=SC2059 # the format is the point: \xNN escapes
  printf "$(sed 's/../\\x&/g' <<<"$hex")" | base64 -w0
}

# Terraform's "h1:" hash of a provider package (golang.org/x/mod/sumdb/dirhash
# Hash1 over the unpacked files): sha256 over the sorted lines
# "<sha256 hex>  <path>\n", one per file, base64, prefixed "h1:".
h1_of_zip() {
  local zip=$1 tmp
  tmp=$(mktemp -d)
  unzip -q "$zip" -d "$tmp"
  (cd "$tmp" && find . -type f -printf '%P\n' | LC_ALL=C sort | while IFS= read -r f; do
    printf '%s  %s\n' "$(sha256sum <"$f" | cut -c1-64)" "$f"
  done) | sha256_base64 | sed 's/^/h1:/'
  rm -rf "$tmp"
}

declare -A H1 ZH
PLATFORMS=()
for arg in "$@"; do
  platform=${arg%%=*}
  bin=${arg#*=}
  [[ $platform =~ ^[a-z0-9]+_[a-z0-9]+$ ]] || die "bad OS_ARCH '$platform' in '$arg'"
  [ -x "$bin" ] || die "$bin is not an executable"
  zipfile="$OUT/${PREFIX}_${platform}.zip"
  stage=$(mktemp -d)
  cp "$bin" "$stage/terraform-provider-${NAME}_v${VERSION}"
  chmod 0755 "$stage/terraform-provider-${NAME}_v${VERSION}"
  # A fixed timestamp and no extra attributes: the same binary gives the same zip.
  touch -d '1980-01-01T00:00:00Z' "$stage/terraform-provider-${NAME}_v${VERSION}"
  rm -f "$zipfile"
  (cd "$stage" && TZ=UTC zip -q -X -D "$zipfile" "terraform-provider-${NAME}_v${VERSION}")
  rm -rf "$stage"
  H1[$platform]=$(h1_of_zip "$zipfile")
  ZH[$platform]="zh:$(sha256sum <"$zipfile" | cut -c1-64)"
  PLATFORMS+=("$platform")
done

cp "$ROOT/terraform-registry-manifest.json" "$OUT/${PREFIX}_manifest.json"
grep -q '"6.0"' "$OUT/${PREFIX}_manifest.json" || die "terraform-registry-manifest.json does not declare protocol 6.0"

(cd "$OUT" && sha256sum "${PREFIX}"_*.zip "${PREFIX}_manifest.json" >"${PREFIX}_SHA256SUMS")
rm -f "$OUT/${PREFIX}_SHA256SUMS.sig"
if [ -n "${GPG_KEY_ID:-}" ]; then
  gpg --batch --yes --local-user "$GPG_KEY_ID" --output "$OUT/${PREFIX}_SHA256SUMS.sig" \
    --detach-sign "$OUT/${PREFIX}_SHA256SUMS"
fi

# The provider network mirror protocol: <host>/<namespace>/<type>/index.json
# lists the versions, <version>.json the archives (URLs relative to it).
: >"$OUT/${VERSION}.hashes"
archives=""
for platform in "${PLATFORMS[@]}"; do
  [ -z "$archives" ] || archives+=","
  archives+=$(printf '\n    "%s": {\n      "url": "%s",\n      "hashes": ["%s", "%s"]\n    }' \
    "$platform" "${PREFIX}_${platform}.zip" "${H1[$platform]}" "${ZH[$platform]}")
  echo "$platform ${H1[$platform]} ${ZH[$platform]}" >>"$OUT/${VERSION}.hashes"
done
for host in "${HOSTS[@]}"; do
  dir="$OUT/mirror/$host/$NAMESPACE/$NAME"
  mkdir -p "$dir"
  # Other versions already in the mirror stay listed.
  versions=$( (ls "$dir" | sed -n 's/^\([0-9][^/]*\)\.json$/\1/p'; echo "$VERSION") | sort -uV)
  for platform in "${PLATFORMS[@]}"; do
    ln -f "$OUT/${PREFIX}_${platform}.zip" "$dir/" 2>/dev/null || cp -f "$OUT/${PREFIX}_${platform}.zip" "$dir/"
  done
  printf '{\n  "archives": {%s\n  }\n}\n' "$archives" >"$dir/${VERSION}.json"
  {
    printf '{\n  "versions": {\n'
    sep=""
    while read -r v; do
      printf '%s    "%s": {}' "$sep" "$v"
      sep=$',\n'
    done <<<"$versions"
    printf '\n  }\n}\n'
  } >"$dir/index.json"
done

echo "packaged terraform-provider-$NAME $VERSION for ${PLATFORMS[*]} in $OUT:"
(cd "$OUT" && ls -1 "${PREFIX}"_* | sed 's/^/  /')
sed 's/^/  /' "$OUT/${VERSION}.hashes"
