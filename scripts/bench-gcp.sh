#!/usr/bin/env bash
# `make bench-gcp`: the GCP figures. Prints, asserts nothing.
#  1. one full build + smoke test through terraform on the GCE simulator's
#     instant backend: wall time and GCE API calls by method (from the
#     simulator's request log, GET /_sim/requests)
#  2. golden_latest_image over a family of 5000 validated images (planted
#     through the simulator's admin API): plan time and API calls
#     (images.list pages of 500)
#  3. one full build + smoke test on the simulator's QEMU backend (real
#     guests: the smoke test's verdicts come back on the serial port), then
#     the same recipe on the local platform from the same base image, for
#     comparison [BENCH_QEMU=1 runs both; they need the base image from
#     scripts/make-base-image.sh, and KVM to be quick]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$HOME/.cache/golden/target}
spec=${GOLDEN_GCP_SPEC:-$root/../shared/specs/gcp/compute.v1.json}
sim=$target/release/golden-sim
scratch=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The simulators remove their guests and files when they exit.
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
  done
  rm -rf "$scratch"
}
trap cleanup EXIT
now() { date +%s.%N; }

# shellcheck source=bench-lib.sh
. "$root/scripts/bench-lib.sh"
use_release_provider "$scratch" "$target"

# start_sim NAME ARGS...: starts golden-sim gcp, sets ENDPOINT ADMIN and the
# provider's environment (GOOGLE_PROJECT, GOOGLE_ZONE, GOOGLE_CREDENTIALS).
start_sim() {
  local name=$1; shift
  mkfifo "$scratch/$name.out"
  "$sim" gcp --spec "$spec" "$@" >"$scratch/$name.out" 2>"$scratch/$name.log" &
  pids+=($!)
  local line
  read -r line <"$scratch/$name.out"
  field() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$line" "$1"; }
  ENDPOINT=$(field endpoint)
  ADMIN=$(field admin)
  export GOOGLE_PROJECT GOOGLE_ZONE GOOGLE_CREDENTIALS
  GOOGLE_PROJECT=$(field project)
  GOOGLE_ZONE=$(field zone)
  GOOGLE_CREDENTIALS=$(field credentials)
}

# calls: the simulator's request log by GCE method (images.list,
# zoneOperations.wait, ...), then cleared.
cat > "$scratch/calls.py" <<'PY'
import collections, json, sys, urllib.parse
reqs = json.load(sys.stdin)
print(f"  API calls: {len(reqs)}")

def method(r):
    segs = [s for s in r["path"].split("/") if s]
    verb = r["method"]
    if "projects" not in segs:
        return f"{verb} /{'/'.join(segs)}"
    rest = segs[segs.index("projects") + 2:]
    scope = ""
    if rest[:1] == ["global"]:
        scope, rest = "global", rest[1:]
    elif rest[:1] in (["zones"], ["regions"]):
        scope, rest = rest[0][:-1], rest[2:]
    if not rest:
        return "projects.get"
    coll = scope + "Operations" if rest[0] == "operations" else rest[0]
    if len(rest) == 1:
        m = {"GET": "list", "POST": "insert"}.get(verb, verb)
    elif len(rest) == 2:
        m = {"GET": "get", "DELETE": "delete", "PATCH": "patch"}.get(verb, verb)
    elif rest[1] == "family":
        m = "getFromFamily"
    else:
        m = {"serialPort": "getSerialPortOutput"}.get(rest[2], rest[2])
    return f"{coll}.{m}"

c = collections.Counter(method(r) for r in reqs)
for k, v in c.most_common():
    print(f"    {v:5d}  {k}")
lists = [r for r in reqs if method(r) == "images.list"]
if lists:
    qs = [urllib.parse.parse_qs(r["query"]) for r in lists]
    firsts = sum(1 for q in qs if "pageToken" not in q)
    print(f"  images.list: {len(lists)} pages in {firsts} listing(s), "
          f"maxResults={qs[0].get('maxResults', ['-'])[0]}, filter={qs[0].get('filter', ['-'])[0]}")
errs = collections.Counter(f"{method(r)} {r['status']}" for r in reqs if r["status"] >= 400)
for k, v in errs.most_common():
    print(f"    answered with an error: {v} x {k}")
PY
calls() {
  curl -s "$ADMIN/requests" | python3 "$scratch/calls.py"
  curl -s -X DELETE "$ADMIN/requests" >/dev/null
}

recipe() { # family source-image checks smoke-timeout
  cat <<HCL
terraform {
  required_providers {
    golden = { source = "golden/golden" }
  }
}
provider "golden" {
  gcp {
    api_endpoint      = "$ENDPOINT"
    power_off_timeout = "20m"
  }
}
resource "golden_image" "x" {
  platform = "gcp"
  family   = "$1"
  source { image = "$2" }
  provision {
    files    = { "/etc/golden-bench" = "bench" }
    commands = ["grep -qx bench /etc/golden-bench"]
  }
  smoke_test {
    checks   = $3
    commands = ["test -f /etc/golden-bench"]
    timeout  = "$4"
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

# phases LOG: when (seconds after the provider's first log line) the build
# instance was off, the image made, the smoke test started and finished
# (local: the guest provisioned, the image flattened, the smoke test done).
phases() {
  python3 - "$1" <<'PY'
import json, sys, datetime
marks = ("build instance off; creating the image from its disk", "candidate image created",
         "creating the smoke-test instance", "smoke test finished",
         # the local platform's
         "guest provisioned and powered off", "image flattened")
t0 = None
for line in open(sys.argv[1], errors="replace"):
    if "{" not in line or '"@timestamp"' not in line:
        continue
    try:
        e = json.loads(line[line.index("{"):])
    except ValueError:
        continue
    t = e["@timestamp"].replace("Z", "+00:00")
    t = t[:26] + t[t.index("+", 19):] if "." in t else t
    t = datetime.datetime.fromisoformat(t).timestamp()
    t0 = t if t0 is None else t0
    if e.get("@message") in marks:
        extra = {k: v for k, v in e.items() if "seconds" in k}
        print(f"  log: +{t - t0:6.1f} s  {e['@message']}" + (f" {extra}" if extra else ""))
PY
}

cd "$root"
# The provider alone and the simulator alone (a no-op when fresh): built
# together, cargo unifies their features and rebuilds both.
cargo build --locked --release -p terraform-provider-golden >/dev/null
cargo build --locked --release -p golden-sim >/dev/null

echo "== gcp, instant backend: one build + smoke test through terraform"
start_sim instant
mkdir -p "$scratch/instant"
# The instant backend's Ubuntu has cloud-init (its Debian, like Google's, has not).
recipe bench-instant projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64 \
  '["boot", "cloud_init", "ssh"]' 5m > "$scratch/instant/main.tf"
curl -s -X DELETE "$ADMIN/requests" >/dev/null
apply "$scratch/instant" "$scratch/instant.log"
phases "$scratch/instant.log"
calls

echo "== gcp, golden_latest_image over a family of 5000 images"
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
    images.append({
        "name": f"{family}-{date}-{build:03d}",
        "family": family,
        "labels": {
            "golden-family": family, "golden-status": "validated",
            "golden-build-date": date, "golden-build-number": f"{build:03d}",
            "golden-builder-version": "0-1-0", "golden-recipe-hash": f"{i:016x}",
            "golden-validated-at": f"{date}t120000z",
        },
    })
for k in range(0, len(images), 500):
    req = urllib.request.Request(f"{admin}/images", data=json.dumps(images[k:k+500]).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()
print(f"  planted {len(images)} validated images of {family}")
PY
mkdir -p "$scratch/lookup"
cat > "$scratch/lookup/main.tf" <<HCL
terraform {
  required_providers {
    golden = { source = "golden/golden" }
  }
}
provider "golden" {
  gcp {
    api_endpoint = "$ENDPOINT"
  }
}
data "golden_latest_image" "x" {
  platform = "gcp"
  family   = "bench-big"
}
output "latest" { value = data.golden_latest_image.x.name }
HCL
curl -s -X DELETE "$ADMIN/requests" >/dev/null
t0=$(now)
(cd "$scratch/lookup" && terraform plan -input=false -no-color -lock=false >"$scratch/lookup.out")
t1=$(now)
printf '  terraform plan with one golden_latest_image: %.2f s\n' "$(echo "$t1 - $t0" | bc)"
grep -E 'latest *=' "$scratch/lookup.out" | sed 's/^ */  answer: /' || true
calls

if [ "${BENCH_QEMU:-0}" = 1 ]; then
  echo "== gcp, QEMU backend (real guests): one build + smoke test through terraform"
  base=$("$root/scripts/make-base-image.sh" | tail -n1)
  start_sim qemu --backend qemu --image "debian-cloud/family/debian-12=$base" --state "$scratch/simstate"
  mkdir -p "$scratch/qemu"
  recipe bench-qemu projects/debian-cloud/global/images/family/debian-12 \
    '["boot", "cloud_init", "ssh"]' 15m > "$scratch/qemu/main.tf"
  curl -s -X DELETE "$ADMIN/requests" >/dev/null
  apply "$scratch/qemu" "$scratch/qemu.log"
  phases "$scratch/qemu.log"
  calls

  echo "== local, the same recipe on the same base image: one build + smoke test through terraform"
  mkdir -p "$scratch/local"
  local_comparison_recipe "$base" "$scratch/store" > "$scratch/local/main.tf"
  apply "$scratch/local" "$scratch/local.log"
  phases "$scratch/local.log"
fi
