//! Scheduled (EventBridge, every minute): finishes async batch jobs that stalled, so every job
//! reaches a final status in bounded time (`argus_core::job_sweeper`).
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

use lambda_runtime::Error;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::lambda::run_event::<Value, Value>(|backend, event, deadline| {
        Box::pin(async move { argus_api::sweeper::handle(backend, &event, deadline).await.map_err(Error::from) })
    })
    .await
}
