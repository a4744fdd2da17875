//! Argus services over DynamoDB and SQS. Every function here takes plain Rust values and returns
//! [`ServiceError`] on failure; the HTTP layer (`argus-api`) maps that error to a status and the
//! envelope once, so the route Lambdas, the batch Lambda and the local runner share this code.
// No input may reach a panic (with panic = "abort" it ends the whole invocation): outside
// tests, a failure is an error value, never an unwrap, expect or panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod aggregator;
pub mod analytics;
pub mod apikeys;
pub mod aws;
pub mod batch_writer;
pub mod bulk;
pub mod client_ids;
pub mod cursor;
pub mod ddb;
pub mod deadline;
pub mod dlq;
pub mod error;
pub mod errors;
pub mod events;
pub mod exports;
pub mod health;
pub mod idempotency;
pub mod job_sweeper;
pub mod jobs;
pub mod jwt;
pub mod keyed_ids;
pub mod keys;
pub mod metrics;
pub mod page;
pub mod pipeline;
pub mod ratelimit;
pub mod rollups;
pub mod sessions;
pub mod stream_stats;
pub mod streams;
pub mod webhooks;

pub use aws::{Backend, Endpoints};
pub use error::ServiceError;
