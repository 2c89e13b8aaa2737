//! Terraform resources. Each maps Terraform values to domain types and back and
//! calls into `lifecycle`; none of them talks to a platform API directly.

pub mod image;
pub(crate) mod values;
