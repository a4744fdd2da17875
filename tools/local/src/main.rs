//! `argus-local`: provisions the local emulators from template.yaml, seeds the `dev` tenant and
//! serves the whole API on 127.0.0.1:3000 (ARGUS_HOST / ARGUS_PORT to change).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use argus_local::stack::provision_backend;
use argus_local::{connect_local, seed_tenant, serve, wait_for_emulators, LocalApi, StackSettings};
use argus_stack::Template;

#[tokio::main]
async fn main() {
    argus_api::telemetry::init_local();
    if let Err(err) = run().await {
        eprintln!("argus-local: {err}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let settings = StackSettings::from_env();
    let template = Template::load_repo()?;
    let backend = connect_local(&settings);
    wait_for_emulators(&backend, Duration::from_secs(60)).await?;
    let (mut backend, provisioned) = provision_backend(backend, &template, &settings).await?;
    // `make dev` sets it: webhooks may then call plain http on loopback (a receiver on this
    // machine). Deployed functions never read this variable.
    backend.webhooks.policy.allow_http_loopback =
        std::env::var("ARGUS_WEBHOOK_ALLOW_HTTP_LOOPBACK").is_ok_and(|v| v == "1" || v == "true");
    // A token issuer on this machine (plain http to loopback), for `make dev` with
    // ARGUS_JWT_ISSUER/ARGUS_JWT_AUDIENCE set. Deployed functions never read this variable.
    if std::env::var("ARGUS_JWT_ALLOW_HTTP_LOOPBACK").is_ok_and(|v| v == "1" || v == "true") {
        backend.jwt = argus_core::jwt::JwtSettings::from_env().map(|mut settings| {
            settings.allow_http_loopback = true;
            argus_core::jwt::JwtVerifier::new(settings)
        });
    }
    let key = seed_tenant(&backend, "dev", std::env::var("ARGUS_DEV_API_KEY").ok().filter(|k| !k.is_empty()))
        .await
        .map_err(|e| format!("seeding tenant dev: {e}"))?;

    let host = std::env::var("ARGUS_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("ARGUS_PORT").unwrap_or_else(|_| "3000".into());
    let addr: SocketAddr = format!("{host}:{port}").parse().map_err(|e| format!("ARGUS_HOST/ARGUS_PORT: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("binding {addr}: {e}"))?;
    let api = Arc::new(LocalApi::new(&backend, &template, &provisioned));
    for consumer in argus_local::drain::consumers(&backend, &template, &provisioned).await? {
        println!("  draining {} into {}", consumer.queue_url, consumer.binary);
        let function = api.functions.function(&consumer.binary)?.clone();
        tokio::spawn(consumer.run(backend.clone(), function));
    }

    // DynamoDB's TTL deletions, which DynamoDB Local does not make: a sweep every
    // ARGUS_LOCAL_TTL_SECONDS (60), its REMOVE records tagged as the TTL service's.
    let ttl_marks = argus_local::ttl::TtlMarks::default();
    if let Some(attribute) = template.table["TimeToLiveSpecification"]["AttributeName"].as_str() {
        let every = std::env::var("ARGUS_LOCAL_TTL_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
        println!("  deleting expired items (TTL on {attribute}) every {every} s");
        tokio::spawn(argus_local::ttl::run(
            backend.dynamodb.clone(),
            provisioned.table.clone(),
            attribute.to_string(),
            ttl_marks.clone(),
            Duration::from_secs(every),
        ));
    }
    for consumer in argus_local::table_stream::consumers(&template, &provisioned.table, &settings.dynamodb_endpoint) {
        let consumer = consumer.with_ttl_marks(ttl_marks.clone());
        println!("  feeding the table's change stream into {}", consumer.binary);
        let function = api.functions.function(&consumer.binary)?.clone();
        tokio::spawn(consumer.run(function));
    }

    for (binary, every) in &template.schedules {
        println!("  running {binary} every {every} s");
        let function = api.functions.function(binary)?.clone();
        tokio::spawn(argus_local::schedule::run(function, Duration::from_secs(*every)));
    }

    println!();
    println!("Argus is serving http://{addr}");
    println!("  table {} | queue {}", provisioned.table, backend.queue_url);
    if backend.webhooks.policy.allow_http_loopback {
        println!("  webhooks may call http://127.0.0.1 and http://localhost (local stack only)");
    }
    println!("  tenant dev, API key: {}", key.secret);
    println!();
    println!("  curl -H 'x-api-key: {}' -X POST http://{addr}/sessions", key.secret);
    println!();

    tokio::select! {
        _ = serve(listener, api) => Ok(()),
        _ = tokio::signal::ctrl_c() => {
            println!("argus-local: stopping");
            Ok(())
        }
    }
}
