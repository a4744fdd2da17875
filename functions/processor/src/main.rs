//! SQS-triggered processor (ReportBatchItemFailures): validates queued events and stores them,
//! or their error records, with the shared batch writer.
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::telemetry::init_lambda();
    let backend = argus_core::Backend::from_lambda_env().await?;
    let backend = &backend;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        // The invocation deadline (epoch ms) as an Instant, so retries stop in time.
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let remaining = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
        let deadline = Instant::now() + remaining;
        Ok::<_, Error>(argus_api::processor::handle(backend, event.payload, Some(deadline)).await)
    }))
    .await
}
