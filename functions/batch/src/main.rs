//! The batch Lambda: bulk create (BatchWriteItem with unprocessed-item retries, or one
//! transaction in atomic mode), bulk update, soft delete and restore of events.
// The handler future nests the services' futures (deadline and keyed-id scopes, streams
// of transactions); its layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    argus_api::lambda::run_http("argus-batch", |backend, req| Box::pin(argus_api::batch::handle(backend, req))).await
}
