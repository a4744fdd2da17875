//! SQS-triggered notifier (ReportBatchItemFailures): fans notifications out to webhooks and
//! makes each delivery attempt: signed, SSRF-checked, retried over about three days.
#![recursion_limit = "256"]

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::lambda::run_event::<SqsEvent, SqsBatchResponse>(|backend, event, deadline| {
        Box::pin(async move { Ok(argus_api::notifier::handle(backend, event, deadline).await) })
    })
    .await
}
