#!/usr/bin/env bash
# `make bench-digitalocean`: the DigitalOcean figures. Prints, asserts nothing.
#  1. one full build + smoke test through terraform on the simulator's instant
#     backend: wall time, DO API calls by endpoint, and the most calls in any
#     60 s window against DO's burst limit (250 a minute per token)
#  2. golden_latest_image over a family of 5000 snapshots (planted through the
#     simulator's admin API, 25 pages of 200): plan time and API calls
#  3. one full build + smoke test on the simulator's QEMU backend (a real
#     guest), then the same recipe on the local platform from the same base
#     image, for comparison [BENCH_QEMU=1 runs both; they need the base image
#     from scripts/make-base-image.sh, and KVM to be quick]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$HOME/.cache/golden/target}
spec=${GOLDEN_DO_SPEC:-$root/../shared/specs/digitalocean/specification/DigitalOcean-public.v2.yaml}
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

# start_sim NAME ARGS...: starts golden-sim digitalocean, sets ENDPOINT TOKEN
# ADMIN SSH_PORT and the provider's environment.
start_sim() {
  local name=$1; shift
  mkfifo "$scratch/$name.out"
  "$sim" digitalocean --spec "$spec" "$@" >"$scratch/$name.out" 2>"$scratch/$name.log" &
  pids+=($!)
  local line
  read -r line <"$scratch/$name.out"
  ENDPOINT=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["endpoint"])' "$line")
  TOKEN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$line")
  ADMIN=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["admin"])' "$line")
  SSH_PORT=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ssh_port"])' "$line")
  export DIGITALOCEAN_API_URL=$ENDPOINT DIGITALOCEAN_TOKEN=$TOKEN
}

# calls: the simulator's request log by endpoint (ids folded), then cleared.
calls() {
  curl -s "$ADMIN/requests" | python3 -c 'import json,sys,collections,re
reqs=json.load(sys.stdin)
print(f"  API calls: {len(reqs)}")
c=collections.Counter()
for r in reqs:
    p=re.sub(r"/\d+","/{id}",r["path"]); p=re.sub(r"/v2/tags/[^/]+","/v2/tags/{tag}",p)
    c[r["method"]+" "+p]+=1
for k,v in c.most_common(): print(f"    {v:5d}  {k}")'
  curl -s -X DELETE "$ADMIN/requests" >/dev/null
}

# peak LOG: the most DO API calls golden made in any 60 s, from the
# provider's own "API call" lines (TF_LOG_PROVIDER=debug: terraform's prefix,
# then the provider's JSON with its @timestamp).
peak() {
  python3 - "$1" <<'PY'
import json, sys, datetime
ts = []
for line in open(sys.argv[1], errors="replace"):
    if '"API call"' not in line:
        continue
    try:
        e = json.loads(line[line.index("{"):])
    except ValueError:
        continue
    if str(e.get("service", "")).lower() != "digitalocean":
        continue
    t = e["@timestamp"].replace("Z", "+00:00")
    t = t[:26] + t[t.index("+", 19):] if "." in t else t
    ts.append(datetime.datetime.fromisoformat(t).timestamp())
ts.sort()
best, j = 0, 0
for i, t in enumerate(ts):
    while ts[j] < t - 60:
        j += 1
    best = max(best, i - j + 1)
span = ts[-1] - ts[0] if ts else 0
print(f"  peak calls in any 60 s window: {best} of DO's 250-a-minute burst "
      f"({len(ts)} calls logged by the provider over {span:.1f} s)")
PY
}

recipe() { # family slug smoke-timeout
  cat <<HCL
terraform {
  required_providers {
    golden = { source = "golden/golden" }
  }
}
provider "golden" {
  digitalocean {
    ssh_port          = $SSH_PORT
    power_off_timeout = "20m"
  }
}
resource "golden_image" "x" {
  platform = "digitalocean"
  family   = "$1"
  source { slug = "$2" }
  provision {
    files    = { "/etc/golden-bench" = "bench" }
    commands = ["grep -qx bench /etc/golden-bench"]
  }
  smoke_test {
    checks   = ["boot", "cloud_init", "ssh"]
    commands = ["test -f /etc/golden-bench"]
    timeout  = "$3"
  }
}
HCL
}

# apply DIR LOG: terraform apply with the provider's debug log in LOG; prints
# the wall time.
apply() {
  local t0 t1
  t0=$(now)
  (cd "$1" && TF_LOG_PROVIDER=debug TF_LOG_PATH="$2" \
     terraform apply -auto-approve -input=false -no-color >/dev/null)
  t1=$(now)
  printf '  wall time (terraform apply): %.2f s\n' "$(echo "$t1 - $t0" | bc)"
}

cd "$root"
# The provider alone and the simulator alone (a no-op when fresh): built
# together, cargo unifies their features and rebuilds both.
cargo build --locked --release -p terraform-provider-golden >/dev/null
cargo build --locked --release -p golden-sim >/dev/null

echo "== digitalocean, instant backend: one build + smoke test through terraform"
start_sim instant
mkdir -p "$scratch/instant"
recipe bench-instant debian-12-x64 5m > "$scratch/instant/main.tf"
curl -s -X DELETE "$ADMIN/requests" >/dev/null
apply "$scratch/instant" "$scratch/instant.log"
peak "$scratch/instant.log"
calls

echo "== digitalocean, golden_latest_image over a family of 5000 snapshots"
start_sim big
python3 - "$ADMIN" <<'PY'
import json, sys, urllib.request, datetime
admin = sys.argv[1]
family = "bench-big"
start = datetime.date(2020, 1, 1)
images = []
for i in range(5000):
    day = start + datetime.timedelta(days=i // 5)
    date, build = day.strftime("%Y%m%d"), i % 5 + 1
    at = f"{date}t120000z"
    images.append({
        "name": f"{family}-{date}-{build:03d}",
        "created_at": f"{day.isoformat()}T12:00:{build:02d}Z",
        "tags": [
            f"golden-family:{family}", "golden-status:validated",
            f"golden-build-date:{date}", f"golden-build-number:{build:03d}",
            "golden-builder-version:0_1_0", f"golden-recipe-hash:{i:016x}",
            f"golden-validated-at:{at}",
        ],
    })
for k in range(0, len(images), 500):
    req = urllib.request.Request(f"{admin}/images", data=json.dumps(images[k:k+500]).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
print(f"  planted {len(images)} validated snapshots of {family}")
PY
mkdir -p "$scratch/lookup"
cat > "$scratch/lookup/main.tf" <<HCL
terraform {
  required_providers {
    golden = { source = "golden/golden" }
  }
}
provider "golden" {
  digitalocean {}
}
data "golden_latest_image" "x" {
  platform = "digitalocean"
  family   = "bench-big"
}
output "latest" { value = data.golden_latest_image.x.name }
HCL
(cd "$scratch/lookup" && terraform init -input=false -no-color >/dev/null 2>&1 || true)
curl -s -X DELETE "$ADMIN/requests" >/dev/null
t0=$(now)
(cd "$scratch/lookup" && terraform plan -input=false -no-color -lock=false >"$scratch/lookup.out")
t1=$(now)
printf '  terraform plan with one golden_latest_image: %.2f s\n' "$(echo "$t1 - $t0" | bc)"
grep -E 'latest *=' "$scratch/lookup.out" | sed 's/^ */  answer: /' || true
calls

if [ "${BENCH_QEMU:-0}" = 1 ]; then
  echo "== digitalocean, QEMU backend (a real guest): one build + smoke test through terraform"
  # Captured first: under pipefail, grep -q closing the pipe early would
  # fail the check.
  help=$("$sim" digitalocean --help 2>&1 || true)
  if ! grep -q -- '--image' <<<"$help"; then
    echo "  skipped: this golden-sim has no QEMU backend (--backend qemu --image SLUG=PATH)"
  else
    base=$("$root/scripts/make-base-image.sh" | tail -n1)
    start_sim qemu --backend qemu --image "debian-12-x64=$base" --state "$scratch/simstate"
    mkdir -p "$scratch/qemu"
    recipe bench-qemu debian-12-x64 15m > "$scratch/qemu/main.tf"
    curl -s -X DELETE "$ADMIN/requests" >/dev/null
    apply "$scratch/qemu" "$scratch/qemu.log"
    grep -E '"@message":"(candidate snapshot built|smoke test finished)"' "$scratch/qemu.log" \
      | python3 -c 'import json,sys
for l in sys.stdin:
    e=json.loads(l[l.index("{"):]); print("  log:", e["@message"], {k:v for k,v in e.items() if "seconds" in k})' || true
    peak "$scratch/qemu.log"
    calls

    echo "== local, the same recipe on the same base image: one build + smoke test through terraform"
    mkdir -p "$scratch/local"
    local_comparison_recipe "$base" "$scratch/store" > "$scratch/local/main.tf"
    apply "$scratch/local" "$scratch/local.log"
  fi
fi
