# The two entry points are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/golden/target
GOLDEN_CACHE_DIR ?= $(HOME)/.cache/golden
BIN := $(CARGO_TARGET_DIR)/debug/terraform-provider-golden
RELEASE_BIN := $(CARGO_TARGET_DIR)/release/terraform-provider-golden

.PHONY: demo test deps base-image build release release-bin install lint unit e2e bench bench-plan bench-proxmox bench-digitalocean bench-gcp clean-demo sim-proxmox sim-digitalocean sim-gcp

deps:
	@scripts/install-deps.sh
	@command -v terraform >/dev/null || { echo "terraform is not on PATH: install terraform >= 1.5 (https://developer.hashicorp.com/terraform/install)" >&2; exit 1; }
	@terraform version | head -1
	@command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

base-image: deps
	@scripts/make-base-image.sh >/dev/null

build: deps
	cargo build --locked --workspace

release-bin: deps
	nice cargo build --locked --release -p terraform-provider-golden

## make install: the release binary into ~/.terraform.d/plugins (terraform's and tofu's
## implicit local mirror), so that `terraform init` finds golden/golden without dev_overrides.
install: release-bin
	@scripts/install.sh $(RELEASE_BIN)

## make release: dist/ as a provider registry and a network mirror expect it
## (zips, SHA256SUMS, signed with GPG_KEY_ID=<key> if given, manifest, mirror/ index files).
## linux_arm64 too when this machine can cross-build it (rust-std for
## aarch64-unknown-linux-gnu and aarch64-linux-gnu-gcc); see README.md "Install".
ARM64_TARGET := aarch64-unknown-linux-gnu
ARM64_BIN := $(CARGO_TARGET_DIR)/$(ARM64_TARGET)/release/terraform-provider-golden
release: release-bin
	@rm -rf dist
	@if rustup target list --installed 2>/dev/null | grep -qx $(ARM64_TARGET) && command -v aarch64-linux-gnu-gcc >/dev/null; then \
	  CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
	    nice cargo build --locked --release -p terraform-provider-golden --target $(ARM64_TARGET) && \
	  scripts/release.sh dist linux_amd64=$(RELEASE_BIN) linux_arm64=$(ARM64_BIN); \
	else \
	  echo "release: linux_amd64 only. Cross-building linux_arm64 needs (1) the Rust standard library for $(ARM64_TARGET), from rustup target add $(ARM64_TARGET), which downloads it from the Rust distribution server: not a package registry, so the project's machines cannot install it; (2) a cross linker: apt-get install gcc-aarch64-linux-gnu. With both present, make release builds it too." >&2; \
	  scripts/release.sh dist linux_amd64=$(RELEASE_BIN); \
	fi

lint: deps
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings

## make demo: build, validate, publish and prune a real image on the local platform.
demo: build base-image
	@scripts/demo.sh

## make test: lint, unit tests, and the E2E tests (real terraform, real QEMU guests).
test: deps base-image lint
	cargo build --locked -p golden-sim
	cargo nextest run --locked --workspace --run-ignored all --no-fail-fast

## make bench: the figures (build, smoke test, bare boot, plan latency).
bench: release-bin base-image
	@scripts/bench.sh

## make bench-plan: terraform plan latency before/after ADR 006, against terraform core and a Go provider.
bench-plan: deps
	@scripts/bench-plan.sh

clean-demo:
	rm -rf examples/local/.terraform examples/local/terraform.tfstate* examples/local/.terraform.lock.hcl

## make bench-proxmox: the Proxmox figures (API calls and time per build, lookups over 5000 VMs, QEMU backend).
bench-proxmox: release-bin base-image
	@scripts/bench-proxmox.sh

## make bench-digitalocean: the DigitalOcean figures (API calls, time and the peak minute per build,
## lookups over 5000 snapshots; BENCH_QEMU=1 adds a build on the simulator's QEMU backend).
bench-digitalocean: release-bin
	@scripts/bench-digitalocean.sh

## make bench-gcp: the GCP figures (GCE API calls by method and time per build, a lookup over
## 5000 images; BENCH_QEMU=1 adds a build on the simulator's QEMU backend and one on local).
bench-gcp: release-bin
	@scripts/bench-gcp.sh

## make sim-proxmox: the PVE API simulator in the foreground (see docs/guides/proxmox-simulator.md).
PVE_SCHEMA ?= ../shared/specs/proxmox/PVE-schema.json
SIM_ARGS ?=
sim-proxmox:
	cargo run --locked -p golden-sim -- proxmox $(if $(wildcard $(PVE_SCHEMA)),--schema $(PVE_SCHEMA)) $(SIM_ARGS)

## make sim-digitalocean: the DigitalOcean API simulator in the foreground; prints endpoint,
## token and ssh port (see docs/guides/digitalocean-simulator.md). Real QEMU droplets:
##   make sim-digitalocean SIM_ARGS="--backend qemu --image debian-12-x64=~/.cache/golden/base/debian-12.qcow2"
DO_SPEC ?= ../shared/specs/digitalocean/specification/DigitalOcean-public.v2.yaml
sim-digitalocean:
	cargo run --locked -p golden-sim -- digitalocean $(if $(wildcard $(DO_SPEC)),--spec $(DO_SPEC)) $(SIM_ARGS)

## make sim-gcp: the Compute Engine API simulator in the foreground; prints endpoint, project,
## zone and the service-account key file it issued (see docs/guides/gcp-simulator.md).
GCP_SPEC ?= ../shared/specs/gcp/compute.v1.json
sim-gcp:
	cargo run --locked -p golden-sim -- gcp $(if $(wildcard $(GCP_SPEC)),--spec $(GCP_SPEC)) $(SIM_ARGS)
