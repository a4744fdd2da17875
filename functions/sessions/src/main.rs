//! Lambda for `/sessions`. Clients are built once at cold start; each request goes to the
//! shared handler in `argus-api`.
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    argus_api::lambda::run_http("argus-sessions", |backend, req| Box::pin(argus_api::sessions::handle(backend, req)))
        .await
}
