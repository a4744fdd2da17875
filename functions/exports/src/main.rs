//! Lambda for `/exports`: creates exports (queued for the export function), reports their
//! status and presigns the download URLs of finished files. It never reads a window.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    argus_api::lambda::run_http("argus-exports", |backend, req| Box::pin(argus_api::exports::handle(backend, req)))
        .await
}
