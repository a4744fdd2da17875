//! `template.yaml` is the source of truth for routes, the table and the queues. This crate reads
//! it and creates the same table and queues on local emulators, so local and deployed
//! definitions cannot drift.

pub mod iam;
pub mod provision;
pub mod s3_limits;
pub mod template;

pub use provision::{provision, Provisioned};
pub use template::{Route, Template};
