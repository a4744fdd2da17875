//! Connecting to the local emulators, provisioning from template.yaml, seeding a tenant.

use std::time::{Duration, Instant};

use argus_core::apikeys::{self, IssuedKey};
use argus_core::aws::local_sdk_config;
use argus_core::{Backend, Endpoints, ServiceError};
use argus_stack::{provision, Provisioned, Template};

/// Where the emulators are and what to call things; from `ARGUS_*` variables.
#[derive(Debug, Clone)]
pub struct StackSettings {
    pub dynamodb_endpoint: String,
    pub sqs_endpoint: String,
    pub s3_endpoint: String,
    pub table: String,
    pub queue_prefix: String,
}

impl StackSettings {
    pub fn from_env() -> Self {
        let var = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_string());
        let sqs_endpoint = var("ARGUS_SQS_ENDPOINT", &format!("http://127.0.0.1:{}", var("ARGUS_SQS_PORT", "9324")));
        Self {
            s3_endpoint: var("ARGUS_S3_ENDPOINT", &sqs_endpoint),
            dynamodb_endpoint: var(
                "ARGUS_DYNAMODB_ENDPOINT",
                &format!("http://127.0.0.1:{}", var("ARGUS_DYNAMODB_PORT", "8000")),
            ),
            sqs_endpoint,
            table: var("ARGUS_TABLE", "argus-dev"),
            queue_prefix: var("ARGUS_QUEUE_PREFIX", "argus-dev"),
        }
    }
}

/// Clients pointed at the emulators (no queue URL yet: that comes from provisioning).
pub fn connect_local(settings: &StackSettings) -> Backend {
    // The SQS endpoint (ministack) serves S3 on the same port.
    let endpoints = Endpoints {
        dynamodb: Some(settings.dynamodb_endpoint.clone()),
        sqs: Some(settings.sqs_endpoint.clone()),
        s3: Some(settings.s3_endpoint.clone()),
    };
    Backend::new(&local_sdk_config(), &endpoints, &settings.table, "")
}

/// Waits until both emulators answer (DynamoDB Local takes a few seconds to start).
pub async fn wait_for_emulators(backend: &Backend, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let dynamodb = backend.dynamodb.list_tables().limit(1).send().await;
        let sqs = backend.sqs.list_queues().max_results(1).send().await;
        match (dynamodb, sqs) {
            (Ok(_), Ok(_)) => return Ok(()),
            (dynamodb, sqs) if Instant::now() >= deadline => {
                return Err(format!(
                    "emulators not reachable after {timeout:?}: dynamodb {}, sqs {}",
                    if dynamodb.is_ok() { "ok" } else { "down" },
                    if sqs.is_ok() { "ok" } else { "down" }
                ))
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Provisions the template's table and queues and returns a backend wired to them.
pub async fn provision_backend(
    mut backend: Backend,
    template: &Template,
    settings: &StackSettings,
) -> Result<(Backend, Provisioned), String> {
    let provisioned = provision(
        &backend.dynamodb,
        &backend.sqs,
        &backend.exports.s3,
        template,
        &settings.table,
        &settings.queue_prefix,
    )
    .await?;
    backend.table = provisioned.table.clone();
    backend.queue_url = provisioned.queue_url("EventsQueue")?.to_string();
    backend.webhooks.queue_url = provisioned.queue_url("WebhooksQueue")?.to_string();
    backend.exports.queue_url = provisioned.queue_url("ExportsQueue")?.to_string();
    backend.exports.bucket = provisioned.bucket("ExportsBucket")?.to_string();
    Ok((backend, provisioned))
}

/// Creates an API key for `tenant`. A given key that already exists for that tenant is reused,
/// so a fixed `ARGUS_DEV_API_KEY` survives restarts against a persistent table.
pub async fn seed_tenant(backend: &Backend, tenant: &str, key: Option<String>) -> Result<IssuedKey, ServiceError> {
    // Enterprise: the dev stack, the tests and the fuzzer send thousands of requests an hour
    // through their keys, and still go through the counters every deployed key goes through.
    let limits = argus_models::limits::LimitSettings {
        tier: Some(argus_models::limits::Tier::Enterprise),
        ..Default::default()
    };
    match apikeys::create_key_with(backend, tenant, key.clone(), argus_models::access::Scopes::all(), limits).await {
        Err(ServiceError::Conflict { .. }) => {
            let secret = key.unwrap_or_default();
            match apikeys::tenant_for_key(backend, &secret).await? {
                Some(owner) if owner == tenant => {
                    Ok(IssuedKey { key_id: apikeys::key_id_of(&secret), tenant: tenant.to_string(), secret })
                }
                _ => Err(ServiceError::bad_request("API_KEY_TAKEN", "that key belongs to another tenant")),
            }
        }
        other => other,
    }
}
