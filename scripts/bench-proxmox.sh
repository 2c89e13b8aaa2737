#!/usr/bin/env bash
# `make bench-proxmox`: the Proxmox figures. Prints, asserts nothing.
#  1. one full build + smoke test through terraform on the simulator's instant
#     backend: wall time and PVE API calls (by endpoint)
#  2. golden_latest_image over a cluster of 5000 VMs: plan time and API calls
#  3. one full build + smoke test on the simulator's QEMU backend (a real
#     guest), for comparison with the local platform's figure from `make bench`
#     [BENCH_QEMU=0 skips]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$HOME/.cache/golden/target}
schema=${GOLDEN_PVE_SCHEMA:-$root/../shared/specs/proxmox/PVE-schema.json}
sim=$target/release/golden-sim
scratch=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$scratch"
}
trap cleanup EXIT
now() { date +%s.%N; }

# shellcheck source=bench-lib.sh
. "$root/scripts/bench-lib.sh"
use_release_provider "$scratch" "$target"

# start_sim NAME ARGS...: starts golden-sim, sets ENDPOINT TOKEN ADMIN.
start_sim() {
  local name=$1; shift
  mkfifo "$scratch/$name.out"
  "$sim" proxmox --schema "$schema" "$@" >"$scratch/$name.out" 2>"$scratch/$name.log" &
  pids+=($!)
  local line
  read -r line <"$scratch/$name.out"
  ENDPOINT=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["endpoint"])' "$line")
  TOKEN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["api_token"])' "$line")
  ADMIN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["admin"])' "$line")
  export PROXMOX_VE_ENDPOINT=$ENDPOINT PROXMOX_VE_API_TOKEN=$TOKEN PROXMOX_VE_INSECURE=true
}

calls() {
  curl -sk "$ADMIN/requests" | python3 -c 'import json,sys,collections,re
reqs=json.load(sys.stdin)
print(f"  API calls: {len(reqs)}")
c=collections.Counter()
for r in reqs:
    p=re.sub(r"/nodes/[^/]+","/nodes/{node}",r["path"]); p=re.sub(r"/qemu/\d+","/qemu/{vmid}",p); p=re.sub(r"/tasks/[^/]+","/tasks/{upid}",p)
    c[r["method"]+" "+p.replace("/api2/json","")]+=1
for k,v in c.most_common(): print(f"    {v:5d}  {k}")'
  curl -sk -X DELETE "$ADMIN/requests" >/dev/null
}

recipe() { # family source
  cat <<HCL
terraform {
  required_providers {
    golden = { source = "golden/golden" }
  }
}
provider "golden" {
  local { store_dir = "$scratch/store" }
  proxmox { agent_timeout = "10m" }
}
resource "golden_image" "x" {
  platform = "proxmox"
  family   = "$1"
  source { template = "debian-12-base" }
  provision {
    files    = { "/etc/golden-bench" = "bench" }
    commands = ["grep -qx bench /etc/golden-bench"]
  }
  smoke_test {
    commands = ["test -f /etc/golden-bench"]
    timeout  = "15m"
  }
}
HCL
}

cd "$root"
cargo build --locked --release -p golden-sim -p terraform-provider-golden >/dev/null

echo "== proxmox, instant backend: one build + smoke test through terraform"
start_sim instant
mkdir -p "$scratch/instant"
recipe bench-instant > "$scratch/instant/main.tf"
curl -sk -X DELETE "$ADMIN/requests" >/dev/null
t0=$(now)
(cd "$scratch/instant" && terraform apply -auto-approve -input=false -no-color >/dev/null)
t1=$(now)
printf '  wall time (terraform apply): %.2f s\n' "$(echo "$t1 - $t0" | bc)"
calls

echo "== proxmox, golden_latest_image over a cluster of 5000 VMs"
start_sim big --extra-vms 5000
mkdir -p "$scratch/big" "$scratch/lookup"
recipe bench-big > "$scratch/big/main.tf"
(cd "$scratch/big" && terraform apply -auto-approve -input=false -no-color >/dev/null)
cat > "$scratch/lookup/main.tf" <<HCL
terraform {
  required_providers {
    golden = { source = "golden/golden" }
  }
}
provider "golden" {
  local { store_dir = "$scratch/store" }
  proxmox {}
}
data "golden_latest_image" "x" {
  platform = "proxmox"
  family   = "bench-big"
}
HCL
curl -sk -X DELETE "$ADMIN/requests" >/dev/null
t0=$(now)
(cd "$scratch/lookup" && terraform plan -input=false -no-color -lock=false >/dev/null)
t1=$(now)
printf '  terraform plan with one golden_latest_image: %.2f s\n' "$(echo "$t1 - $t0" | bc)"
calls

if [ "${BENCH_QEMU:-1}" = 1 ]; then
  echo "== proxmox, QEMU backend (a real guest): one build + smoke test through terraform"
  base=$("$root/scripts/make-base-image.sh" | tail -n1)
  start_sim qemu --backend qemu --base-image "$base" --state-dir "$scratch/simstate"
  mkdir -p "$scratch/qemu"
  recipe bench-qemu > "$scratch/qemu/main.tf"
  curl -sk -X DELETE "$ADMIN/requests" >/dev/null
  t0=$(now)
  (cd "$scratch/qemu" && TF_LOG=info terraform apply -auto-approve -input=false -no-color >/dev/null 2>"$scratch/qemu.log")
  t1=$(now)
  printf '  wall time (terraform apply): %.1f s\n' "$(echo "$t1 - $t0" | bc)"
  grep -E '"@message":"(guest agent answered|candidate template built|smoke test finished)"' "$scratch/qemu.log" \
    | python3 -c 'import json,sys
for l in sys.stdin:
    e=json.loads(l); print("  log:", e["@message"], {k:v for k,v in e.items() if "seconds" in k})' || true
  calls
fi
