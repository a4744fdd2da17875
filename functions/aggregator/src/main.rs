//! DynamoDB Streams-triggered (the table's change stream, ReportBatchItemFailures): keeps the
//! rollups behind `POST /query/aggregate` and `total_count`, and each stream's status counters
//! (`argus_core::aggregator`).
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
        Ok::<_, Error>(argus_api::aggregator::handle(backend, &event.payload, Some(deadline)).await)
    }))
    .await
}
