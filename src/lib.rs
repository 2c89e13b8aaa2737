//! terraform-provider-golden: builds, smoke-tests, publishes and prunes golden
//! VM images inside `terraform apply`.
//!
//! Layers, one direction: `resources`/`data_sources` (Terraform glue) ->
//! `lifecycle` (rules and pipeline) -> `platforms` (one module per platform) ->
//! `qemu` (the VM runner shared by `local` and the simulators).

pub mod data_sources;
pub mod fsutil;
pub mod lifecycle;
pub mod logging;
pub mod platforms;
pub mod process;
pub mod provider;
pub mod qemu;
pub mod resources;
pub mod signals;
pub mod sshkey;
pub mod tfschema;
