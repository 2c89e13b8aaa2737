#!/usr/bin/env bash
# `make bench-plan` (also the last part of `make bench`): terraform plan
# latency, printed, asserting nothing. Interleaved rounds, medians:
#   lookups  1 golden_image + 20 golden_latest_image over a 1000-image family
#   floor    the same config whose 20 lookups hit an empty family (no work)
#   core     20 built-in terraform_data resources (terraform core alone)
#   go-null  20 null_resource of HashiCorp's Go `null` provider, when a build
#            of it is at $GO_NULL_DIR (see docs/adr/006-plugin-socket.md)
# each for this tree ("after") and for BENCH_BEFORE_REF ("before": the last
# commit serving on TCP without TCP_NODELAY), built in a git worktree.
# BENCH_ROUNDS (default 15), BENCH_BEFORE=0 skips the before build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$HOME/.cache/golden/target}
export CARGO_TARGET_DIR=$target
rounds=${BENCH_ROUNDS:-15}
before_ref=${BENCH_BEFORE_REF:-984761e3f8c044679c7ec14977bc80f69f9df6d1}
go_null=${GO_NULL_DIR:-$HOME/.cache/golden/bench/go-null}
scratch=$(mktemp -d)
cleanup() {
  git -C "$root" worktree remove --force "$scratch/before-src" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT
now() { date +%s.%N; }

mkdir -p "$scratch/bin/after" "$scratch/bin/before"
if [ "${BENCH_BEFORE:-1}" = 1 ]; then
  echo "== building the before binary ($before_ref)" >&2
  git -C "$root" worktree add --detach "$scratch/before-src" "$before_ref" >/dev/null 2>&1
  (cd "$scratch/before-src" && cargo build --locked --release --bin terraform-provider-golden >/dev/null 2>&1)
  cp "$target/release/terraform-provider-golden" "$scratch/bin/before/"
fi
echo "== building the after binary" >&2
(cd "$root" && cargo build --locked --release --bin terraform-provider-golden >/dev/null 2>&1)
cp "$target/release/terraform-provider-golden" "$scratch/bin/after/"

cli_config() { # $1: directory of the golden binary
  {
    echo 'provider_installation {'
    echo '  dev_overrides {'
    echo "    \"registry.terraform.io/golden/golden\" = \"$1\""
    [ -x "$go_null/terraform-provider-null" ] && echo "    \"registry.terraform.io/hashicorp/null\" = \"$go_null\""
    echo '  }'
    echo '  direct {}'
    echo '}'
  }
}
cli_config "$scratch/bin/after" > "$scratch/after.tfrc"
cli_config "$scratch/bin/before" > "$scratch/before.tfrc"
export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1
unset TF_LOG TF_LOG_PROVIDER

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
                "golden-status": "validated", "golden-validated-at": "2026-01-01T00:00:00Z", "os": "debian-12"}
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
  source { path = "/nonexistent/base.qcow2" }
  retention { keep = 1000 }
}
HCL
}
mkdir -p "$scratch/lookups" "$scratch/floor" "$scratch/core" "$scratch/go-null"
{ header; for i in $(seq 1 20); do printf 'data "golden_latest_image" "l%d" {\n  platform = "local"\n  family = "big"\n}\n' "$i"; done; } > "$scratch/lookups/main.tf"
{ header; for i in $(seq 1 20); do printf 'data "golden_images" "l%d" {\n  platform = "local"\n  family = "empty"\n}\n' "$i"; done; } > "$scratch/floor/main.tf"
for i in $(seq 1 20); do printf 'resource "terraform_data" "r%d" {\n  input = %d\n}\n' "$i" "$i"; done > "$scratch/core/main.tf"
{
  printf 'terraform {\n  required_providers {\n    null = { source = "hashicorp/null" }\n  }\n}\n'
  for i in $(seq 1 20); do printf 'resource "null_resource" "r%d" {\n  triggers = { i = "%d" }\n}\n' "$i" "$i"; done
} > "$scratch/go-null/main.tf"

# name|dir|cli config
cases=("after lookups|lookups|after" "after floor|floor|after" "core|core|after")
if [ "${BENCH_BEFORE:-1}" = 1 ]; then
  cases+=("before lookups|lookups|before" "before floor|floor|before")
fi
if [ -x "$go_null/terraform-provider-null" ]; then
  cases+=("go-null|go-null|after")
else
  echo "(no Go null provider at $go_null: the go-null pair is skipped)" >&2
fi

plan_once() { # $1 dir, $2 cli config name
  local t0 t1
  t0=$(now)
  (cd "$scratch/$1" && TF_CLI_CONFIG_FILE="$scratch/$2.tfrc" terraform plan -input=false -lock=false -no-color >/dev/null)
  t1=$(now)
  echo "$t1 - $t0" | bc
}
declare -A samples
for _ in $(seq 1 "$rounds"); do
  for c in "${cases[@]}"; do
    IFS='|' read -r name dir cfg <<<"$c"
    samples[$name]+="$(plan_once "$dir" "$cfg") "
  done
done
median() { printf '%s\n' $1 | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A m
for c in "${cases[@]}"; do
  IFS='|' read -r name _ _ <<<"$c"
  m[$name]=$(median "${samples[$name]}")
done

echo "== terraform plan latency (median of $rounds interleaved rounds)"
printf '  %-54s %s\n' "case" "seconds"
for c in "${cases[@]}"; do
  IFS='|' read -r name _ _ <<<"$c"
  printf '  %-54s %.3f\n' "$name" "${m[$name]}"
done
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }
echo "  after: lookups/floor = $(ratio "${m[after lookups]}" "${m[after floor]}")x (goal <= 1.3x)"
if [ -n "${m[before floor]:-}" ]; then
  echo "  before: lookups/floor = $(ratio "${m[before lookups]}" "${m[before floor]}")x"
  echo "  floor after/before = $(ratio "${m[after floor]}" "${m[before floor]}")x"
fi
if [ -n "${m[go-null]:-}" ]; then
  echo "  after floor / go-null = $(ratio "${m[after floor]}" "${m[go-null]}")x (goal <= 0.6x)"
  [ -n "${m[before floor]:-}" ] && echo "  before floor / go-null = $(ratio "${m[before floor]}" "${m[go-null]}")x"
  head -n 2 "$go_null/VERSION" 2>/dev/null | sed "s/^/  go-null: /" || true
fi
