//! Lambda for `/errors`: the error records of events that could not be stored.
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    argus_api::lambda::run_http("argus-errors", |backend, req| Box::pin(argus_api::errors::handle(backend, req))).await
}
