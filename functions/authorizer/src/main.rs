//! Lambda authorizer for the HTTP API (REQUEST type, simple responses, identity `x-api-key`).
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use lambda_runtime::{run, service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::telemetry::init_lambda();
    let backend = argus_core::Backend::from_lambda_env().await?;
    let backend = &backend;
    run(service_fn(move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| async move {
        // 0: no deadline (as for the HTTP functions, `input::invocation_deadline`).
        let deadline =
            (event.context.deadline > 0).then(|| argus_api::dispatch::deadline_instant(event.context.deadline));
        Ok::<_, Error>(argus_api::authorizer::handle(backend, &event.payload, deadline).await?)
    }))
    .await
}
