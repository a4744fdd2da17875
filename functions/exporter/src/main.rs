//! SQS-triggered export function (one message per invocation, ReportBatchItemFailures): works
//! one slice of an export, streaming files to S3 (`argus_export::worker`). The only function,
//! with the archiver, that links the Parquet and Avro encoders.
#![recursion_limit = "256"]

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::telemetry::init_lambda();
    let backend = argus_core::Backend::from_lambda_env().await?;
    let backend = &backend;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = argus_api::dispatch::deadline_instant(event.context.deadline);
        Ok::<_, Error>(argus_export::worker::handle(backend, &event.payload, Some(deadline)).await)
    }))
    .await
}
