//! DynamoDB Streams-triggered archive function (TTL removals of events only, by the mapping's
//! filter): writes expiring events to S3 as Parquet partitioned by tenant, stream and date
//! (`argus_export::archive`). A failed write fails the batch, which the stream retries.
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
        Ok::<_, Error>(argus_export::archive::handle(backend, &event.payload, Some(deadline)).await)
    }))
    .await
}
