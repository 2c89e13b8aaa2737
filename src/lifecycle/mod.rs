//! Platform-neutral rules: naming, versions, metadata, the recipe and its hash,
//! cloud-init rendering, retention, selection, and the pipeline that orders the
//! platform steps. Nothing here knows about Terraform or a particular platform.

pub mod allocation;
pub mod cloudinit;
pub mod context;
pub mod duration;
pub mod image;
pub mod ledger;
pub mod metadata;
pub mod naming;
pub mod packages;
pub mod pipeline;
pub mod recipe;
pub mod report;
pub mod retention;
pub mod selection;
