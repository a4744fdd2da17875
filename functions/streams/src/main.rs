//! Lambda for `/streams`: a tenant's streams and their settings.
// The handler future nests the services' futures (deadline scope, streams of queries); its
// layout needs more than the default query depth in release builds.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    argus_api::lambda::run_http("argus-streams", |backend, req| Box::pin(argus_api::streams::handle(backend, req)))
        .await
}
