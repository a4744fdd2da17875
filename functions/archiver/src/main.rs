//! DynamoDB Streams-triggered archive function (TTL removals of events only, by the mapping's
//! filter): writes expiring events to S3 as Parquet partitioned by tenant, stream and date
//! (`argus_export::archive`). A failed write fails the batch, which the stream retries.
#![recursion_limit = "256"]

use lambda_runtime::Error;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::lambda::run_event::<Value, Value>(|backend, event, deadline| {
        Box::pin(async move { Ok(argus_export::archive::handle(backend, &event, deadline).await) })
    })
    .await
}
