//! Scheduled (EventBridge, every minute): finishes async batch jobs that stalled, so every job
//! reaches a final status in bounded time (`argus_core::job_sweeper`).
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
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
        argus_api::sweeper::handle(backend, &event.payload, Some(deadline)).await.map_err(Error::from)
    }))
    .await
}
