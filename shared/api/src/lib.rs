//! Argus HTTP layer. Each route group has one `handle(&Backend, Request) -> Response` that the
//! Lambda binaries and the local runner call alike; business rules live in `argus-core`.
//!
//! Requests arrive as API Gateway HTTP API (payload 2.0) events: handlers dispatch on the
//! event's `routeKey` and `pathParameters`, exactly as they would behind API Gateway.
// No input may reach a panic (with panic = "abort" it ends the whole invocation): outside
// tests, a failure is an error value, never an unwrap, expect or panic.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod aggregator;
pub mod apigw;
pub mod authorizer;
pub mod batch;
pub mod dispatch;
pub mod error;
pub mod errors;
pub mod events;
pub mod exports;
pub mod fallback;
pub mod health;
pub mod idempotent;
pub mod ingress;
pub mod input;
pub mod lambda;
pub mod multi;
pub mod notifier;
pub mod processor;
pub mod ratelimit;
pub mod response;
pub mod routes;
pub mod sessions;
pub mod streams;
pub mod sweeper;
pub mod telemetry;
pub mod webhooks;

pub use error::ApiError;
