//! Lambda for `/webhooks`: registrations, secrets, test sends and the delivery log. It never
//! calls a receiver; the notifier does, from its queue.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    argus_api::lambda::run_http("argus-webhooks", |backend, req| Box::pin(argus_api::webhooks::handle(backend, req)))
        .await
}
