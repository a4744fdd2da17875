//! Function binary name → handler, for callers that host several functions in one process
//! (the local runner, the fixture test). Lambda binaries call their handler directly.

use argus_core::Backend;
use lambda_http::{Body, Request, Response};

/// Invokes the HTTP function named by its binary (as in template.yaml's `BuildProperties`).
/// `None` if no HTTP function has that name.
pub async fn invoke_http(binary: &str, backend: &Backend, req: Request) -> Option<Response<Body>> {
    Some(match binary {
        "argus-sessions" => crate::sessions::handle(backend, req).await,
        "argus-health" => crate::health::handle(backend, req).await,
        _ => return None,
    })
}
