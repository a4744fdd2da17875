//! SQS-triggered notifier (ReportBatchItemFailures): fans notifications out to webhooks and
//! makes each delivery attempt: signed, SSRF-checked, retried over about three days.
#![recursion_limit = "256"]

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::telemetry::init_lambda();
    let backend = argus_core::Backend::from_lambda_env().await?;
    let backend = &backend;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = argus_api::dispatch::deadline_instant(event.context.deadline);
        Ok::<_, Error>(argus_api::notifier::handle(backend, event.payload, Some(deadline)).await)
    }))
    .await
}
