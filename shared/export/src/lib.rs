//! Export and archive files for Argus: the encoders (NDJSON, CSV, Parquet, Avro), the S3
//! multipart writer, the export function's slices and the archive function. Only the export
//! and archive functions (and the local runner) link this crate: Parquet and Avro stay out of
//! every other function.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod archive;
pub mod encode;
pub mod upload;
pub mod worker;

/// Registers the export and archive functions with `argus_api::dispatch` (the local runner
/// and the tests host every function in one process).
pub fn register_functions() {
    argus_api::dispatch::register("argus-exporter", |backend, event, deadline| {
        Box::pin(async move { Ok(worker::handle(&backend, &event, deadline).await) })
    });
    argus_api::dispatch::register("argus-archiver", |backend, event, deadline| {
        Box::pin(async move { Ok(archive::handle(&backend, &event, deadline).await) })
    });
}
