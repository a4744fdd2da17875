//! Lambda for `GET /health` and API Gateway's `$default` route (404/405 with the envelope).
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    argus_api::lambda::run_http("argus-health", |backend, req| Box::pin(argus_api::health::handle(backend, req))).await
}
