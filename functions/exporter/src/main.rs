//! SQS-triggered export function (one message per invocation, ReportBatchItemFailures): works
//! one slice of an export, streaming files to S3 (`argus_export::worker`). The only function,
//! with the archiver, that links the Parquet and Avro encoders.
#![recursion_limit = "256"]

use lambda_runtime::Error;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::lambda::run_event::<Value, Value>(|backend, event, deadline| {
        Box::pin(async move { Ok(argus_export::worker::handle(backend, &event, deadline).await) })
    })
    .await
}
