# The two entry points are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
export CARGO_TARGET_DIR ?= $(HOME)/.cache/golden/target
GOLDEN_CACHE_DIR ?= $(HOME)/.cache/golden
BIN := $(CARGO_TARGET_DIR)/debug/terraform-provider-golden
RELEASE_BIN := $(CARGO_TARGET_DIR)/release/terraform-provider-golden

.PHONY: demo test deps base-image build release lint unit e2e bench bench-plan bench-proxmox clean-demo sim-proxmox

deps:
	@scripts/install-deps.sh
	@command -v terraform >/dev/null || { echo "terraform is not on PATH: install terraform >= 1.5 (https://developer.hashicorp.com/terraform/install)" >&2; exit 1; }
	@terraform version | head -1
	@command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

base-image: deps
	@scripts/make-base-image.sh >/dev/null

build: deps
	cargo build --locked --workspace

release: deps
	cargo build --locked --release -p terraform-provider-golden

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
bench: release base-image
	@scripts/bench.sh

## make bench-plan: terraform plan latency before/after ADR 006, against terraform core and a Go provider.
bench-plan: deps
	@scripts/bench-plan.sh

clean-demo:
	rm -rf examples/local/.terraform examples/local/terraform.tfstate* examples/local/.terraform.lock.hcl

## make bench-proxmox: the Proxmox figures (API calls and time per build, lookups over 5000 VMs, QEMU backend).
bench-proxmox: release base-image
	@scripts/bench-proxmox.sh

## make sim-proxmox: the PVE API simulator in the foreground (see docs/guides/proxmox-simulator.md).
PVE_SCHEMA ?= ../shared/specs/proxmox/PVE-schema.json
SIM_ARGS ?=
sim-proxmox:
	cargo run --locked -p golden-sim -- proxmox $(if $(wildcard $(PVE_SCHEMA)),--schema $(PVE_SCHEMA)) $(SIM_ARGS)
