//! End-to-end tests through the real `terraform` binary and real QEMU guests.
//! One binary, one module per area (ripgrep's layout).
//!
//! Tests that boot guests are `#[ignore]`d so that a plain `cargo test` stays
//! fast; `make test` runs them with `--run-ignored all`. They need the base
//! image from `scripts/make-base-image.sh` and fail (never skip) without it.

mod e2e {
    pub mod do_sim;
    pub mod gcp_sim;
    pub mod sim;
    pub mod util;

    mod bad_config;
    mod conformance;
    mod digitalocean_client;
    mod digitalocean_clients;
    mod digitalocean_faults;
    mod digitalocean_qemu;
    mod digitalocean_sim;
    mod examples;
    mod gcp_clients;
    mod gcp_faults;
    mod gcp_golden_qemu;
    mod gcp_qemu;
    mod gcp_sim_tests;
    mod install;
    mod plugin_socket;
    mod proxmox;
    mod proxmox_clients;
    mod proxmox_faults;
    mod proxmox_fidelity;
    mod proxmox_permissions;
}
