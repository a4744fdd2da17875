//! DynamoDB Streams-triggered (the table's change stream, ReportBatchItemFailures): keeps the
//! rollups behind `POST /query/aggregate` and `total_count`, and each stream's status counters
//! (`argus_core::aggregator`).
#![recursion_limit = "256"]

use lambda_runtime::Error;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::lambda::run_event::<Value, Value>(|backend, event, deadline| {
        Box::pin(async move { Ok(argus_api::aggregator::handle(backend, &event, deadline).await) })
    })
    .await
}
