//! Shared pieces: request counting, run statistics, the in-process API, event generation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use argus_core::Backend;
use argus_local::stack::provision_backend;
use argus_local::{connect_local, wait_for_emulators, LocalApi, StackSettings};
use argus_stack::Template;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use serde_json::{json, Value};

/// Counts DynamoDB requests as sent (retries included).
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<AtomicU64>);

impl RequestCounter {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Median, min and max of several runs.
#[derive(Debug, Clone, Copy)]
pub struct Stats {
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Stats {
    pub fn of(mut runs: Vec<Duration>) -> Self {
        runs.sort();
        Self { median: runs[runs.len() / 2], min: runs[0], max: runs[runs.len() - 1] }
    }

    pub fn json(&self) -> Value {
        json!({"median_ms": ms(self.median), "min_ms": ms(self.min), "max_ms": ms(self.max)})
    }
}

pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0
}

/// The stack the benchmarks run against: a fresh table and queues, the API served in-process
/// on loopback by the local runner's code, and the processor draining the queue.
pub struct Bench {
    pub settings: StackSettings,
    /// Counted clients: what the API and the processor use.
    pub backend: Backend,
    pub counter: RequestCounter,
    /// Uncounted clients, for polling and setup.
    pub plain: Backend,
    pub api_url: String,
    pub http: reqwest::Client,
    /// Each function's backend (counted, with its IAM guard), for the event sources run here.
    pub functions: argus_local::functions::Functions,
}

impl Bench {
    pub async fn start() -> Result<Self, String> {
        let mut settings = StackSettings::from_env();
        // A named table is reused as it is (ARGUS_BENCH_TABLE: measure again without loading).
        settings.table = std::env::var("ARGUS_BENCH_TABLE")
            .unwrap_or_else(|_| format!("argus-bench-{}", uuid::Uuid::new_v4().simple()));
        settings.queue_prefix = settings.table.clone();
        let template = Template::load_repo()?;
        let connected = connect_local(&settings);
        wait_for_emulators(&connected, Duration::from_secs(60)).await?;
        let (mut plain, provisioned) = provision_backend(connected, &template, &settings).await?;
        // The webhook bench's receiver is on loopback (as with make dev); its stream window is
        // zero so each error is its own (leading) notification.
        plain.webhooks.policy.allow_http_loopback = true;
        plain.webhooks.error_window = Duration::ZERO;
        let counter = RequestCounter::default();
        let mut backend = plain.clone();
        backend.dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&argus_core::aws::local_sdk_config())
                .endpoint_url(&settings.dynamodb_endpoint)
                .interceptor(counter.clone())
                .build(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
        let api_url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
        let api = Arc::new(LocalApi::new(&backend, &template, &provisioned));
        for consumer in argus_local::drain::consumers(&backend, &template, &provisioned).await? {
            let function = api.functions.function(&consumer.binary)?.clone();
            tokio::spawn(consumer.run(backend.clone(), function));
        }
        let functions = api.functions.clone();
        tokio::spawn(argus_local::serve(listener, api));
        argus_core::aws::install_tls_provider();
        let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().map_err(|e| e.to_string())?;
        Ok(Self { settings, backend, counter, plain, api_url, http, functions })
    }

    /// A fresh tenant with a key and one session: (tenant, key, session id).
    pub async fn tenant(&self, label: &str) -> Result<(String, String, String), String> {
        let tenant = format!("{label}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let key = argus_local::seed_tenant(&self.plain, &tenant, None).await.map_err(|e| e.to_string())?.secret;
        let session =
            argus_core::sessions::create(&self.plain, &tenant, Default::default()).await.map_err(|e| e.to_string())?;
        Ok((tenant, key, session.id.to_string()))
    }

    /// Sends DataStream events to `stream` with `POST /ingest/batch`, 10,000 a call, 2 calls in
    /// flight. The events carry no client ids, so the server writes them with `BatchWriteItem`
    /// (client ids would make every create a conditional transaction, far slower on DynamoDB
    /// Local); items answered 429/5xx (throttled, out of time: not stored) are sent again, and
    /// only those. A lost answer is an error, never a blind resend.
    pub async fn ingest_batches(&self, key: &str, stream: &str, events: &[Value]) -> Result<(), String> {
        use futures::StreamExt;
        let url = format!("{}/ingest/batch", self.api_url);
        let calls = futures::stream::iter(events.chunks(10_000).map(|chunk| {
            let (http, url) = (&self.http, &url);
            async move {
                // Indexes of this chunk's items not stored yet. Only those are sent again: events
                // without client ids get server ids, so resending a stored one would store it twice.
                let mut pending: Vec<usize> = (0..chunk.len()).collect();
                for attempt in 0..30u32 {
                    if pending.is_empty() {
                        return Ok(());
                    }
                    if attempt > 0 {
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)))).await;
                    }
                    let items: Vec<&Value> = pending.iter().map(|&i| &chunk[i]).collect();
                    let body = json!({"stream_id": stream, "events": items}).to_string();
                    let response =
                        http.post(url).header("x-api-key", key).body(body).send().await.map_err(|e| e.to_string())?;
                    let status = response.status().as_u16();
                    let report: Value = response.json().await.map_err(|e| e.to_string())?;
                    let Some(results) = report["results"].as_array() else {
                        // Refused whole (429, 503 before any write): nothing of it was stored.
                        if status == 429 || status >= 500 {
                            continue;
                        }
                        return Err(format!("ingest refused ({status}): {report}"));
                    };
                    let mut still = Vec::new();
                    for result in results {
                        let index = result["index"].as_u64().ok_or("a result without index")? as usize;
                        let code = result["status"].as_u64().unwrap_or(0);
                        let original = *pending.get(index).ok_or("a result index out of range")?;
                        match code {
                            200 | 201 => {}
                            429 | 500..=599 => still.push(original),
                            _ => return Err(format!("item refused: {result}")),
                        }
                    }
                    if results.len() != pending.len() {
                        return Err(format!("{} results for {} items", results.len(), pending.len()));
                    }
                    pending = still;
                }
                Err("an ingest call kept failing".to_string())
            }
        }))
        .buffer_unordered(2)
        .collect::<Vec<Result<(), String>>>()
        .await;
        calls.into_iter().collect::<Result<Vec<()>, String>>().map(|_| ())
    }

    /// Events of `session` stored so far (uncounted reads).
    pub async fn stored(&self, tenant: &str, session: &str) -> Result<usize, String> {
        let filter =
            argus_core::events::EventFilter { session: uuid::Uuid::parse_str(session).ok(), ..Default::default() };
        let mut count = 0;
        let mut cursor: Option<String> = None;
        loop {
            let page = argus_core::events::list(&self.plain, tenant, &filter, 1000, cursor.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            count += page.items.len();
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(count),
            }
        }
    }

    /// Waits until `expected` events of the session are stored.
    pub async fn wait_stored(
        &self,
        tenant: &str,
        session: &str,
        expected: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if self.stored(tenant, session).await? >= expected {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "only {} of {expected} events stored after {timeout:?}",
                    self.stored(tenant, session).await?
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The same `count` events for every variant (only the session differs).
pub fn events(session: &str, count: usize) -> Vec<Value> {
    let now = argus_models::time::now();
    (0..count)
        .map(|i| {
            let category = ["page", "click", "purchase", "error"][i % 4];
            json!({
                "session_id": session,
                "category": category,
                "name": format!("event-{}", i % 97),
                "data": {"i": i, "path": format!("/products/{}", i % 500), "value": (i * 7) % 1000},
                // Within the last 20 days, so inside the default stream's 90-day retention whenever the
                // bench runs.
                "timestamp": argus_models::time::format(&(now - chrono::Duration::seconds((i % (20 * 86_400)) as i64))),
            })
        })
        .collect()
}
