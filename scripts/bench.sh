#!/usr/bin/env bash
# `make bench`: the figures for the closing note. Prints, asserts nothing.
#  1. base image creation (cold, into a scratch cache)      [BENCH_BASE=0 skips]
#  2. one build and one smoke test with phases, against a bare boot (cargo bench)
#  3. terraform plan latency, before and after ADR 006, against terraform core
#     and a Go provider (scripts/bench-plan.sh, alone: make bench-plan)
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

"$root/scripts/bench-plan.sh"
