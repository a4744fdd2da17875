//! AWS clients, built once per process (at Lambda cold start, or once by the local runner).

use std::time::Duration;

use aws_config::{retry::RetryConfig, timeout::TimeoutConfig, BehaviorVersion, Region, SdkConfig};
use aws_credential_types::{provider::SharedCredentialsProvider, Credentials};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// Where the services are, and what the table and queue are called.
#[derive(Debug, Clone)]
pub struct Backend {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub table: String,
    pub queue_url: String,
    /// Batch writer tuning (`ARGUS_WRITER_*`); the deadline is set per invocation.
    pub writer: crate::batch_writer::BatchWriterConfig,
    /// Longest a bulk write may keep retrying, within the invocation's own deadline.
    pub write_budget: Duration,
    /// The notifier's queue and the webhook delivery rules.
    pub webhooks: crate::webhooks::WebhookSettings,
    /// Keys and tenant limits this instance has read, trusted for a few seconds.
    pub grants: std::sync::Arc<crate::apikeys::GrantCache>,
    /// Rate-limit counters this instance has seen (refusals from memory).
    pub rate_memo: std::sync::Arc<crate::ratelimit::CounterMemo>,
    /// Bearer tokens' issuer, when configured (`ARGUS_JWT_*`); `None` refuses every token.
    pub jwt: Option<crate::jwt::JwtVerifier>,
    /// The exports bucket, the export function's queue and the S3 client.
    pub exports: crate::exports::ExportSettings,
}

/// Explicit endpoints for local emulators. In Lambda none are set and the SDK resolves the
/// regional endpoints (or `AWS_ENDPOINT_URL_*` if the operator sets them).
#[derive(Debug, Clone, Default)]
pub struct Endpoints {
    pub dynamodb: Option<String>,
    pub sqs: Option<String>,
    pub s3: Option<String>,
}

/// Makes rustls on ring the process's TLS provider. `reqwest` (the CLI, the local runner, the
/// tests) is built without a provider of its own, so every process that builds a `reqwest`
/// client calls this first; a second call changes nothing.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The one HTTPS client of the process: rustls with ring (see the workspace manifest on why
/// the SDK defaults are off).
fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(10))
        .build()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn writer_from_env() -> crate::batch_writer::BatchWriterConfig {
    let defaults = crate::batch_writer::BatchWriterConfig::default();
    crate::batch_writer::BatchWriterConfig {
        concurrency: env_number("ARGUS_WRITER_CONCURRENCY", defaults.concurrency as u64).max(1) as usize,
        max_attempts: env_number("ARGUS_WRITER_MAX_ATTEMPTS", u64::from(defaults.max_attempts)).max(1) as u32,
        ..defaults
    }
}

/// Configuration from the Lambda environment (region, role credentials).
pub async fn lambda_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .load()
        .await
}

/// Configuration for local emulators: fixed region and dummy credentials (the emulators do not
/// check signatures, but the SDK still signs).
pub fn local_sdk_config() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "local",
            "local",
            None,
            None,
            "argus-local",
        )))
        .http_client(http_client())
        .timeout_config(timeouts())
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .build()
}

impl Backend {
    pub fn new(
        config: &SdkConfig,
        endpoints: &Endpoints,
        table: impl Into<String>,
        queue_url: impl Into<String>,
    ) -> Self {
        let mut ddb = aws_sdk_dynamodb::config::Builder::from(config);
        if let Some(url) = &endpoints.dynamodb {
            ddb = ddb.endpoint_url(url);
        }
        let mut sqs = aws_sdk_sqs::config::Builder::from(config);
        if let Some(url) = &endpoints.sqs {
            sqs = sqs.endpoint_url(url);
        }
        // Path-style against an emulator (one host for every bucket); virtual-hosted in AWS.
        let mut s3 = aws_sdk_s3::config::Builder::from(config);
        if let Some(url) = &endpoints.s3 {
            s3 = s3.endpoint_url(url).force_path_style(true);
        }
        Self {
            exports: crate::exports::ExportSettings {
                s3: aws_sdk_s3::Client::from_conf(s3.build()),
                bucket: std::env::var("ARGUS_EXPORTS_BUCKET").unwrap_or_default(),
                queue_url: std::env::var("ARGUS_EXPORTS_QUEUE_URL").unwrap_or_default(),
            },
            dynamodb: aws_sdk_dynamodb::Client::from_conf(ddb.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            table: table.into(),
            queue_url: queue_url.into(),
            writer: writer_from_env(),
            write_budget: Duration::from_secs(env_number("ARGUS_WRITE_BUDGET_SECONDS", 20)),
            webhooks: crate::webhooks::WebhookSettings::default(),
            grants: std::sync::Arc::new(crate::apikeys::GrantCache::new(Duration::from_secs(env_number(
                "ARGUS_GRANT_CACHE_SECONDS",
                crate::apikeys::DEFAULT_GRANT_CACHE.as_secs(),
            )))),
            rate_memo: Default::default(),
            jwt: crate::jwt::JwtSettings::from_env().map(crate::jwt::JwtVerifier::new),
        }
    }

    /// The writer configuration for one invocation: retries stop at the write budget, or
    /// `reserve` before the invocation's own deadline, whichever comes first.
    pub fn writer_for(
        &self,
        invocation_deadline: Option<std::time::Instant>,
        reserve: Duration,
    ) -> crate::batch_writer::BatchWriterConfig {
        let budget_end = std::time::Instant::now() + self.write_budget;
        let deadline = match invocation_deadline.map(|d| d.checked_sub(reserve).unwrap_or(d)) {
            Some(lambda_end) => budget_end.min(lambda_end),
            None => budget_end,
        };
        crate::batch_writer::BatchWriterConfig { deadline: Some(deadline), ..self.writer.clone() }
    }

    /// The backend a Lambda function uses: `ARGUS_TABLE` and `ARGUS_QUEUE_URL` are set by the
    /// SAM template. A missing variable is a deployment error, reported at cold start.
    pub async fn from_lambda_env() -> Result<Self, String> {
        let table = std::env::var("ARGUS_TABLE").map_err(|_| "ARGUS_TABLE is not set".to_string())?;
        let queue_url = std::env::var("ARGUS_QUEUE_URL").unwrap_or_default();
        let config = lambda_sdk_config().await;
        Ok(Self::new(&config, &Endpoints::default(), table, queue_url))
    }
}
