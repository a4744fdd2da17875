//! SQS-triggered processor (ReportBatchItemFailures): validates queued events and stores them,
//! or their error records, with the shared batch writer.
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::lambda::run_event::<SqsEvent, SqsBatchResponse>(|backend, event, deadline| {
        Box::pin(async move { Ok(argus_api::processor::handle(backend, event, deadline).await) })
    })
    .await
}
