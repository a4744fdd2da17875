//! Lambda for `/events`: ingestion (to SQS), reads, updates, soft delete and restore.
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    argus_api::lambda::run_http("argus-events", |backend, req| Box::pin(argus_api::events::handle(backend, req))).await
}
