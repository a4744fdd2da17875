//! Webhooks (issue 13): registrations, the notifications they receive, and their delivery.
//!
//! - `store`: the webhooks themselves (CRUD, secrets and their rotation).
//! - `signing`: Standard Webhooks signatures.
//! - `outbox`: notifications fanned out to deliveries, and the queue messages that drive them.
//! - `delivery`: one attempt of one delivery: claim, send, record, schedule the next.
//! - `sender`: the HTTP client, which connects only to addresses it has checked (SSRF).
//! - `alerts`: `stream.processing_error`, coalesced per stream and window.
//! - `thresholds`: `stream.threshold_exceeded`, per minute, on crossing.
//!
//! Nothing here runs in a request path except `test`, which only queues a delivery: every
//! HTTP call to a receiver happens in the notifier function, from its queue.

pub mod alerts;
pub mod delivery;
pub mod outbox;
pub mod sender;
pub mod signing;
pub mod store;
pub mod thresholds;

use std::time::Duration;

use argus_models::webhook::{default_schedule, UrlPolicy};

/// How this process delivers webhooks. Deployed functions take the defaults (and the queue URL
/// from `ARGUS_WEBHOOK_QUEUE_URL`); only the local runner may allow plain http to loopback.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// The notifier's queue (`WebhooksQueue`).
    pub queue_url: String,
    pub policy: UrlPolicy,
    /// Waits between attempts (attempt 1 is immediate).
    pub retry_schedule: Vec<Duration>,
    /// Connect, TLS, request and response headers of one attempt, all within this.
    pub attempt_timeout: Duration,
    /// `stream.processing_error`: at most one notification per stream per window.
    pub error_window: Duration,
    /// An endpoint failing every attempt for this long is disabled.
    pub disable_after: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            queue_url: std::env::var("ARGUS_WEBHOOK_QUEUE_URL").unwrap_or_default(),
            policy: UrlPolicy::default(),
            retry_schedule: default_schedule(),
            attempt_timeout: Duration::from_secs(5),
            error_window: Duration::from_secs(60),
            disable_after: argus_models::webhook::DISABLE_AFTER_FAILING,
        }
    }
}

/// Epoch milliseconds now.
pub(crate) fn now_ms() -> i64 {
    argus_models::time::now().timestamp_millis()
}

/// Handles one notifier message. `Err`: the message must come back (SQS redelivers it).
pub async fn handle(backend: &crate::Backend, message: &outbox::NotifierMessage) -> Result<(), crate::ServiceError> {
    use outbox::NotifierMessage;
    match message {
        NotifierMessage::Deliver { tenant, webhook_id, delivery_sk, attempt } => {
            delivery::run(backend, tenant, webhook_id, delivery_sk, *attempt).await
        }
        NotifierMessage::ErrorsCheck { tenant, stream } => alerts::check(backend, tenant, stream).await,
        NotifierMessage::ThresholdsCheck { tenant, stream, minute } => {
            thresholds::check(backend, tenant, stream, *minute).await
        }
        NotifierMessage::JobCompleted { tenant, job_id } => {
            let job = crate::jobs::get(backend, tenant, &job_id.to_string()).await?;
            let data = serde_json::json!({
                "job_id": job.job_id,
                "operation": job.operation,
                "status": job.status,
                "total": job.total,
                "succeeded": job.succeeded,
                "failed": job.failed,
                "completed_at": job.completed_at,
                "results_url": format!("/batch/jobs/{}/results", job.job_id),
            });
            let notification = format!("job:{job_id}");
            outbox::notify(
                backend,
                tenant,
                None,
                argus_models::webhook::EventType::JobCompleted,
                &notification,
                data,
                None,
            )
            .await
            .map(|_| ())
        }
    }
}

/// `POST /webhooks/{id}/test`: queues a `webhook.test` delivery to that webhook now (enabled
/// or not, so an endpoint can be checked before it is re-enabled). Returns the delivery id.
pub async fn send_test(backend: &crate::Backend, tenant: &str, id: &str) -> Result<String, crate::ServiceError> {
    let webhook = store::get(backend, tenant, id).await?;
    let notification = format!("test:{}", uuid::Uuid::new_v4());
    let data = serde_json::json!({"message": "a test notification from Argus", "webhook_id": webhook.webhook_id});
    outbox::notify(
        backend,
        tenant,
        webhook.stream_id.as_deref(),
        argus_models::webhook::EventType::Test,
        &notification,
        data,
        Some(&webhook.webhook_id),
    )
    .await?;
    Ok(outbox::delivery_id(tenant, &webhook.webhook_id, &notification))
}
