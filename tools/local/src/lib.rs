//! The local API runner. Serves exactly the routes declared in template.yaml on a local port:
//! each HTTP request becomes the API Gateway HTTP API (payload 2.0) event that Lambda would
//! receive, the authorizer logic runs first on authorized routes, and the event goes to the same
//! handler code the Lambda binaries run (`argus_api::dispatch`).

pub mod drain;
pub mod functions;
pub mod limits;
pub mod schedule;
pub mod server;
pub mod stack;
pub mod table_stream;
pub mod ttl;

pub use server::{serve, LocalApi};
pub use stack::{connect_local, seed_tenant, wait_for_emulators, StackSettings};
