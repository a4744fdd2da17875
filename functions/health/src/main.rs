//! Lambda for `GET /health` and API Gateway's `$default` route (404/405 with the envelope).
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    argus_api::telemetry::init_lambda();
    let backend = argus_core::Backend::from_lambda_env().await?;
    let backend = &backend;
    run(service_fn(move |req: Request| async move { Ok::<_, Error>(argus_api::health::handle(backend, req).await) }))
        .await
}
