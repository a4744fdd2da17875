//! Argus models: the types every layer agrees on (wire shapes, ids, timestamps) and the
//! validation rules that need no I/O. Free of AWS and HTTP types so the batch Lambda, the
//! route Lambdas, the local runner and the tests all share exactly one definition.
// No input may reach a panic (with panic = "abort" it ends the whole invocation): outside
// tests, a failure is an error value, never an unwrap, expect or panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod access;
pub mod analytics;
pub mod datastream;
pub mod envelope;
pub mod error_record;
pub mod event;
pub mod export;
pub mod ids;
pub mod limits;
pub mod rollup;
pub mod session;
pub mod stream;
pub mod tenant;
pub mod time;
pub mod validation;
pub mod webhook;

pub use envelope::{ErrorBody, ErrorEnvelope};
pub use validation::{FieldError, ValidationError};
