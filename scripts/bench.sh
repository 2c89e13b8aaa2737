#!/usr/bin/env bash
# `make bench`: the figures for the closing note. Prints, asserts nothing.
#  1. base image creation (cold, into a scratch cache)      [BENCH_BASE=0 skips]
#  2. one build and one smoke test with phases, against a bare boot (cargo bench)
#  3. terraform plan latency: 1 golden_image + 20 golden_latest_image over a
#     family of 1000 images, against the same config whose 20 lookups hit an
#     empty family (no work: plugin start-up and terraform core only), and
#     against 20 built-in terraform_data resources (terraform core alone).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$HOME/.cache/golden/target}
base=$("$root/scripts/make-base-image.sh" | tail -n1)
export GOLDEN_BASE_IMAGE=$base
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
now() { date +%s.%N; }

if [ "${BENCH_BASE:-1}" = 1 ]; then
  echo "== base image creation (cold)"
  t0=$(now)
  GOLDEN_CACHE_DIR="$scratch/cache" "$root/scripts/make-base-image.sh" >/dev/null
  t1=$(now)
  printf 'base image: %.1f s, %s\n' "$(echo "$t1 - $t0" | bc)" "$(du -h "$scratch/cache/base/debian-12.qcow2" | cut -f1)"
  rm -rf "$scratch/cache"
fi

echo "== build and smoke test (phases from the provider's log)"
cd "$root"
TF_LOG=info cargo bench --locked --bench local 2>"$scratch/bench.log"
grep -E '"@message":"(guest provisioned and powered off|image flattened|smoke test finished|published)"' "$scratch/bench.log" \
  | python3 -c 'import json,sys
for l in sys.stdin:
    e=json.loads(l); print("  log:", e["@message"], {k:v for k,v in e.items() if "seconds" in k})'

echo "== terraform plan latency"
cat > "$scratch/cli.tfrc" <<CFG
provider_installation {
  dev_overrides {
    "registry.terraform.io/golden/golden" = "$target/release"
  }
  direct {}
}
CFG
export TF_CLI_CONFIG_FILE="$scratch/cli.tfrc" TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
store="$scratch/store"
python3 - "$store" <<'PY'
import json, os, sys
store = sys.argv[1]
fam = "big"
d = os.path.join(store, fam)
os.makedirs(d)
n = 0
for day in range(1, 35):
    for b in range(1, 31):
        if n == 1000: break
        n += 1
        date = f"2026{(day-1)//28+1:02d}{(day-1)%28+1:02d}"
        name = f"{fam}-{date}-{b:03d}"
        meta = {"golden-family": fam, "golden-build-date": date, "golden-build-number": f"{b:03d}",
                "golden-builder-version": "0.1.0", "golden-recipe-hash": "0123456789abcdef",
                "golden-status": "validated", "golden-validated-at": f"2026-01-01T00:00:00Z", "os": "debian-12"}
        json.dump({"metadata": meta}, open(os.path.join(d, name + ".json"), "w"))
        open(os.path.join(d, name + ".qcow2"), "w").close()
PY
header() {
  cat <<HCL
terraform {
  required_providers {
    golden = { source = "golden/golden" }
  }
}
provider "golden" {
  local { store_dir = "$store" }
}
resource "golden_image" "x" {
  platform = "local"
  family   = "big"
  source { path = "$base" }
  retention { keep = 1000 }
}
HCL
}
mkdir -p "$scratch/lookups" "$scratch/floor" "$scratch/core"
{ header; for i in $(seq 1 20); do printf 'data "golden_latest_image" "l%d" {\n  platform = "local"\n  family = "big"\n}\n' "$i"; done; } > "$scratch/lookups/main.tf"
{ header; for i in $(seq 1 20); do printf 'data "golden_images" "l%d" {\n  platform = "local"\n  family = "empty"\n}\n' "$i"; done; } > "$scratch/floor/main.tf"
for i in $(seq 1 20); do printf 'resource "terraform_data" "r%d" {\n  input = %d\n}\n' "$i" "$i"; done > "$scratch/core/main.tf"
median_plan() {
  local dir=$1 runs=7 times=()

  for _ in $(seq 1 $runs); do
    local t0 t1
    t0=$(now)
    (cd "$dir" && terraform plan -input=false -lock=false -no-color >/dev/null)
    t1=$(now)
    times+=("$(echo "$t1 - $t0" | bc)")
  done
  printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}
l=$(median_plan "$scratch/lookups")
f=$(median_plan "$scratch/floor")
c=$(median_plan "$scratch/core")
printf 'plan, 1 golden_image + 20 golden_latest_image over 1000 images: %.3f s (median of 7)\n' "$l"
printf 'plan, same with 20 no-work lookups (floor):                   %.3f s\n' "$f"
printf 'ratio lookups/floor: %.2fx (goal <= 1.3x)\n' "$(echo "$l / $f" | bc -l)"
printf 'plan, 20 built-in terraform_data resources (terraform core):  %.3f s\n' "$c"
