//! Test harness: a private copy of the stack per test. Each `TestStack` provisions its own table
//! and queues (from template.yaml) on the real emulators started by `make test`, and serves the
//! API through the local runner on a free port, so tests run in parallel and beside a dev stack.

pub mod fault_proxy;
pub mod issuer;
pub mod receiver;

use std::sync::Arc;

use argus_core::Backend;
use argus_local::drain::consumers;
use argus_local::functions::Functions;
use argus_local::stack::provision_backend;
use argus_local::table_stream::StreamConsumer;
use argus_local::{connect_local, seed_tenant, serve, LocalApi, StackSettings};
use argus_stack::{Provisioned, Template};
use serde_json::Value;

pub use reqwest::Method;

pub struct TestStack {
    pub base_url: String,
    /// The runner's own, unrestricted access (seeding, inspection).
    pub backend: Backend,
    /// Each function's restricted backend (its policy enforced and recorded) and limits.
    pub functions: Functions,
    pub provisioned: Provisioned,
    pub template: Template,
    pub http: reqwest::Client,
    server: tokio::task::JoinHandle<()>,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// The steady-faults proxy the functions talk through, when on (`steady_faults`).
    pub proxy: Option<fault_proxy::FaultProxy>,
    /// The table's change stream → aggregator mapping, read on demand (`drain_changes`).
    changes: tokio::sync::Mutex<Option<StreamConsumer>>,
    /// The change stream → archiver mapping, read on demand (`drain_archive`).
    archive: tokio::sync::Mutex<Option<StreamConsumer>>,
    /// Keys the local TTL sweeper deleted (`expire_now`), tagged as TTL removals.
    pub ttl_marks: argus_local::ttl::TtlMarks,
    /// Whether this stack provisioned its table and queues (and removes them when dropped);
    /// stacks `serve`d over another's resources do not.
    owns_resources: bool,
}

/// Endpoints of the emulators, from `ARGUS_TEST_DYNAMODB_ENDPOINT` / `ARGUS_TEST_SQS_ENDPOINT`.
pub fn test_settings() -> StackSettings {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run the suite with `make test`, which starts DynamoDB Local and the SQS endpoint"
            )
        })
    };
    let name = format!("argus-test-{}", uuid::Uuid::new_v4().simple());
    let sqs_endpoint = var("ARGUS_TEST_SQS_ENDPOINT");
    StackSettings {
        dynamodb_endpoint: var("ARGUS_TEST_DYNAMODB_ENDPOINT"),
        // The SQS endpoint (ministack) serves S3 on the same port.
        s3_endpoint: std::env::var("ARGUS_TEST_S3_ENDPOINT").unwrap_or_else(|_| sqs_endpoint.clone()),
        sqs_endpoint,
        table: name.clone(),
        queue_prefix: name,
    }
}

/// `ARGUS_TEST_FAULTS=steady` (a second pass of `make test`): every function's DynamoDB calls go
/// through the fault proxy, which throttles a steady share of calls and holds back a share of
/// every `BatchWriteItem` as `UnprocessedItems`, as AWS does under load. The suite must pass
/// unchanged: throttling is a normal condition, not a special test.
pub fn steady_faults() -> Option<fault_proxy::Faults> {
    match std::env::var("ARGUS_TEST_FAULTS").as_deref() {
        Ok("steady") => Some(fault_proxy::Faults {
            seed: std::env::var("ARGUS_TEST_FAULT_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7),
            unprocessed_rate: 0.2,
            throttle_rate: 0.03,
            transaction_conflict_rate: 0.2,
            ..fault_proxy::Faults::default()
        }),
        _ => None,
    }
}

/// Streams whose test events may carry 2021 timestamps (`TestStack::key`).
pub const HISTORIC_STREAMS: [&str; 2] = ["default", "mobile"];

impl TestStack {
    /// A stack whose table has no change stream: the aggregator is not fed. DynamoDB Local
    /// makes every transaction on a table with a stream slower with each streamed table it
    /// holds (measured: 13 ms without, 80 ms with one, 250 ms with eight), so only the tests
    /// that read the stream get one (`start_with_changes`).
    pub async fn start() -> Self {
        Self::start_provisioned(false).await
    }

    /// A stack exactly as template.yaml says, change stream included: `drain_changes` feeds
    /// the aggregator.
    pub async fn start_with_changes() -> Self {
        Self::start_provisioned(true).await
    }

    /// A stack whose webhook settings `configure` changes first (short retry schedules, a
    /// strict URL policy). Tests, like `make dev`, otherwise allow plain http to loopback so
    /// the local receiver can be called.
    pub async fn start_with_webhooks(
        changes: bool,
        configure: impl FnOnce(&mut argus_core::webhooks::WebhookSettings),
    ) -> Self {
        Self::start_configured(changes, configure).await
    }

    async fn start_provisioned(changes: bool) -> Self {
        Self::start_configured(changes, |_| {}).await
    }

    async fn start_configured(
        changes: bool,
        configure: impl FnOnce(&mut argus_core::webhooks::WebhookSettings),
    ) -> Self {
        let settings = test_settings();
        let mut template = Template::load_repo().expect("template.yaml parses");
        if !changes {
            if let Some(table) = template.table.as_mapping_mut() {
                table.remove("StreamSpecification");
            }
        }
        let (mut backend, provisioned) =
            provision_backend(connect_local(&settings), &template, &settings).await.expect("provisioning");
        backend.webhooks.policy.allow_http_loopback = true;
        configure(&mut backend.webhooks);
        // The test's own reads and seeding wait out DynamoDB Local's stalls: it serves one
        // request at a time, and a raw read's 1 MB pages, still queued after their caller
        // answered, hold it for 10 s and more, past the SDK's 10 s attempt timeout. This
        // stack's functions keep Lambda's SDK settings; a stack `serve`d over a clone of
        // `backend` gets the 60 s too (none of those tests is about a DynamoDB timeout: the
        // ones that are put a proxy client in first).
        let mut direct = backend.clone();
        direct.dynamodb = aws_sdk_dynamodb::Client::from_conf(
            backend
                .dynamodb
                .config()
                .to_builder()
                .timeout_config(
                    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                        .connect_timeout(std::time::Duration::from_secs(2))
                        .operation_attempt_timeout(std::time::Duration::from_secs(60))
                        .build(),
                )
                .build(),
        );
        let Some(faults) = steady_faults() else {
            let mut stack = Self::serve(backend, provisioned, template).await;
            stack.backend = direct;
            stack.owns_resources = true;
            return stack;
        };
        let proxy = fault_proxy::FaultProxy::start(&settings.dynamodb_endpoint, faults).await;
        let mut through_proxy = backend;
        through_proxy.dynamodb = proxy.dynamodb_client();
        let mut stack = Self::serve(through_proxy, provisioned, template).await;
        // The functions go through the faults; the test's own calls stay direct.
        stack.backend = direct;
        stack.proxy = Some(proxy);
        stack.owns_resources = true;
        stack
    }

    /// Like `start`, and drains the queue into the processor continuously, as `make dev` does.
    pub async fn start_with_processor() -> Self {
        Self::start().await.with_processor().await
    }

    /// Drains the queue into the processor continuously from now on.
    pub async fn with_processor(self) -> Self {
        let mut stack = self;
        for consumer in consumers(&stack.backend, &stack.template, &stack.provisioned).await.expect("consumers") {
            let function = stack.functions.function(&consumer.binary).expect("consumer function").clone();
            stack.background.push(tokio::spawn(consumer.run(stack.backend.clone(), function)));
        }
        stack
    }

    /// Serves `backend` (possibly pointing somewhere broken) through the runner.
    pub async fn serve(backend: Backend, provisioned: Provisioned, template: Template) -> Self {
        init_logs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}", listener.local_addr().expect("addr"));
        let api = Arc::new(LocalApi::new(&backend, &template, &provisioned));
        let functions = api.functions.clone();
        let server = tokio::spawn(serve(listener, api));
        Self {
            base_url,
            backend,
            functions,
            provisioned,
            template,
            http: {
                argus_core::aws::install_tls_provider();
                reqwest::Client::new()
            },
            server,
            background: Vec::new(),
            proxy: None,
            changes: tokio::sync::Mutex::new(None),
            archive: tokio::sync::Mutex::new(None),
            ttl_marks: Default::default(),
            owns_resources: false,
        }
    }

    /// DynamoDB's TTL service, now: deletes every item whose `expires_at` is past (their
    /// `REMOVE` records then carry the TTL service's identity). Returns how many.
    pub async fn expire_now(&self) -> usize {
        let attribute =
            self.template.table["TimeToLiveSpecification"]["AttributeName"].as_str().expect("TTL attribute");
        argus_local::ttl::sweep(&self.backend.dynamodb, &self.backend.table, attribute, &self.ttl_marks)
            .await
            .expect("TTL sweep")
    }

    /// Delivers the change stream to the archiver until nothing is left; returns the records
    /// it was given (the mapping's filter passes TTL removals of events only).
    pub async fn drain_archive(&self) -> usize {
        let mut guard = self.archive.lock().await;
        let consumer = guard.get_or_insert_with(|| self.stream_consumer("argus-archiver"));
        Self::drain_consumer(consumer, self.functions.function("argus-archiver").expect("archiver")).await
    }

    pub fn stream_consumer(&self, binary: &str) -> StreamConsumer {
        let source = self.template.stream_consumers.get(binary).expect("a stream consumer");
        let endpoint = std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT").expect("ARGUS_TEST_DYNAMODB_ENDPOINT");
        StreamConsumer::new(binary, &self.provisioned.table, &endpoint, source).with_ttl_marks(self.ttl_marks.clone())
    }

    pub async fn drain_consumer(consumer: &mut StreamConsumer, function: &argus_local::functions::Function) -> usize {
        let mut delivered = 0;
        for _ in 0..10_000 {
            let report = consumer.drain_once(function).await.expect("reading the change stream");
            delivered += report.records;
            if report.records == 0 && report.filtered_out == 0 {
                return delivered;
            }
            if report.retried > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        panic!("the change stream did not drain");
    }

    /// Delivers the table's change stream to the aggregator until nothing is left, as Lambda's
    /// DynamoDB Streams event source does (a reported failure is read again). Returns the
    /// records delivered.
    pub async fn drain_changes(&self) -> usize {
        let mut guard = self.changes.lock().await;
        let consumer = guard.get_or_insert_with(|| self.stream_consumer("argus-aggregator"));
        Self::drain_consumer(consumer, self.functions.function("argus-aggregator").expect("aggregator")).await
    }

    /// The backend `binary` runs with: its policy enforced and its calls recorded.
    pub fn function_backend(&self, binary: &str) -> Backend {
        self.functions.function(binary).expect("a function of template.yaml").backend.clone()
    }

    /// Creates `items` with `POST /batch/events` as a client should: calls of at most `per_call`
    /// items, and every 503 (a whole call, or an item, with the id it was given) sent again
    /// until stored. DynamoDB Local on a loaded 2-core machine may not take a big call before
    /// the function's deadline; what it could not take comes back 503. Returns ids in order.
    pub async fn create_all(&self, key: &str, items: &[Value], per_call: usize) -> Vec<String> {
        let mut ids = vec![String::new(); items.len()];
        let mut pending: Vec<(usize, Value)> = items.iter().cloned().enumerate().collect();
        for round in 0..20 {
            if pending.is_empty() {
                return ids;
            }
            let mut left = Vec::new();
            for call in pending.chunks(per_call.max(1)) {
                let body: Vec<&Value> = call.iter().map(|(_, item)| item).collect();
                let (status, report) = self.post("/batch/events", key, serde_json::json!(body)).await;
                if status == 503 {
                    left.extend(call.iter().cloned());
                    continue;
                }
                assert_eq!(status, 200, "round {round}: {report}");
                for ((index, item), result) in call.iter().zip(report["results"].as_array().expect("results")) {
                    match result["status"].as_u64() {
                        Some(200 | 201) => ids[*index] = result["id"].as_str().expect("id").to_string(),
                        Some(503) => {
                            let mut item = item.clone();
                            item["id"] = result["id"].clone();
                            left.push((*index, item));
                        }
                        other => panic!("item {index}: {other:?} {result}"),
                    }
                }
            }
            pending = left;
            if !pending.is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
        panic!("{} items still not stored after 20 rounds", pending.len());
    }

    /// A new API key for `tenant`.
    /// A new API key of `tenant`. the_eye's sample payloads (and most tests) date from 2021: the
    /// tenant's `default` and `mobile` streams keep events the longest retention (3,650 days) so
    /// those timestamps are stored, as after `PATCH /streams/{id}` (tests of retention itself
    /// use streams of their own, with the default 90 days).
    pub async fn key(&self, tenant: &str) -> String {
        let secret = seed_tenant(&self.backend, tenant, None).await.expect("seeding tenant").secret;
        let longest = argus_models::stream::StreamChanges {
            retention_days: Some(argus_models::stream::MAX_RETENTION_DAYS),
            ..Default::default()
        };
        for stream in HISTORIC_STREAMS {
            argus_core::streams::update(&self.backend, tenant, stream, &longest).await.expect("stream retention");
        }
        secret
    }

    /// Sends a request and returns the status and the JSON body (`Null` when empty).
    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Option<String>) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base_url));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.expect("request reaches the runner");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("non-JSON body ({status}): {text}"))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str, key: &str) -> (u16, Value) {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        self.call(Method::POST, path, Some(key), Some(body.to_string())).await
    }
}

impl Drop for TestStack {
    fn drop(&mut self) {
        self.server.abort();
        for task in &self.background {
            task.abort();
        }
        if self.owns_resources {
            remove_resources(&self.provisioned);
        }
    }
}

/// Deletes a finished test's table and queues. DynamoDB Local's background jobs read the
/// description of every table it holds, GSIs and all, on the one thread that also serves
/// every request: left in place, a whole suite's tables made every call of the later tests
/// slower (a second pass ran its analytics tests 2-4x slower, into the runner's timeouts).
/// Runs on its own thread and runtime, since `drop` cannot await (and may run in a panic).
fn remove_resources(provisioned: &Provisioned) {
    let (Ok(dynamodb_endpoint), Ok(sqs_endpoint)) =
        (std::env::var("ARGUS_TEST_DYNAMODB_ENDPOINT"), std::env::var("ARGUS_TEST_SQS_ENDPOINT"))
    else {
        return;
    };
    let table = provisioned.table.clone();
    let queues: Vec<String> = provisioned.queue_urls.values().cloned().collect();
    let removal = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        runtime.block_on(async move {
            let config = argus_core::aws::local_sdk_config();
            let dynamodb = aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&config).endpoint_url(dynamodb_endpoint).build(),
            );
            let sqs = aws_sdk_sqs::Client::from_conf(
                aws_sdk_sqs::config::Builder::from(&config).endpoint_url(sqs_endpoint).build(),
            );
            let table_deleted = async {
                if let Err(err) = dynamodb.delete_table().table_name(&table).send().await {
                    tracing::warn!(table, error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err), "test table not deleted");
                }
            };
            let queues_deleted = futures::future::join_all(queues.iter().map(|url| {
                let sqs = &sqs;
                async move {
                    if let Err(err) = sqs.delete_queue().queue_url(url).send().await {
                        tracing::warn!(url, error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "test queue not deleted");
                    }
                }
            }));
            // Best effort, and never long: a table or queue left behind only costs speed, and
            // a test (or its panic) must not wait on a stalled emulator.
            if tokio::time::timeout(std::time::Duration::from_secs(15), futures::future::join(table_deleted, queues_deleted))
                .await
                .is_err()
            {
                tracing::warn!(table, "test resources not deleted within 15 s");
            }
        });
    });
    let _ = removal.join();
}

/// The runner's and the functions' warnings and errors on the test's output (`RUST_LOG`
/// overrides), which nextest shows for a failing test: why a call answered 500 or 503 (an
/// authorizer or function past its timeout, a failed AWS call) is then in CI's log.
fn init_logs() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn,aws_config=error,aws_smithy_runtime=error".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_target(false)
        .with_test_writer()
        .try_init();
}

/// Whether an answer says "overloaded, try again" (what a client resends): a 503, a 429, or API
/// Gateway's bare 500 for a function or authorizer past its timeout. Never Argus's own 500
/// (`INTERNAL_ERROR`, always a bug).
pub fn overloaded(status: u16, body: &Value) -> bool {
    status == 503
        || status == 429
        || (status == 500 && *body == serde_json::json!({"message": "Internal Server Error"}))
}

/// Asserts `body` is the error envelope with `code`, and returns its details.
pub fn assert_envelope(status: u16, body: &Value, expected_status: u16, code: &str) -> Value {
    assert_eq!(status, expected_status, "status for {body}");
    let error = body.get("error").unwrap_or_else(|| panic!("no envelope: {body}"));
    assert_eq!(error["code"], code, "{body}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(error["details"].is_object(), "{body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "envelope has only `error`: {body}");
    error["details"].clone()
}

/// Polls `check` until it returns `Some`, or panics after `seconds`.
pub async fn eventually<T, F, Fut>(seconds: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "timed out after {seconds} s waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

impl TestStack {
    /// Creates a session and returns its id.
    pub async fn session(&self, key: &str) -> String {
        let (status, body) = self.call(Method::POST, "/sessions", Some(key), None).await;
        assert_eq!(status, 201, "{body}");
        body["id"].as_str().expect("session id").to_string()
    }

    /// Walks every page of `path` (which must already carry its query string, possibly empty
    /// after `?`) and returns all items in order.
    pub async fn all_pages(&self, path: &str, key: &str, limit: usize) -> Vec<Value> {
        let separator = if path.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..10_000 {
            let url = match &cursor {
                Some(c) => format!("{path}{separator}limit={limit}&cursor={c}"),
                None => format!("{path}{separator}limit={limit}"),
            };
            let (status, page) = self.get(&url, key).await;
            assert_eq!(status, 200, "{url}: {page}");
            let page_items = page["items"].as_array().expect("items").clone();
            assert!(page_items.len() <= limit);
            items.extend(page_items);
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return items,
            }
        }
        panic!("pagination of {path} does not end");
    }

    /// Messages waiting in the events queue (visible + in flight).
    pub async fn queue_depth(&self) -> usize {
        self.depth(&self.backend.queue_url).await
    }

    /// Messages waiting in the template's queue `logical_id` (visible + in flight + delayed).
    pub async fn queue_depth_of(&self, logical_id: &str) -> usize {
        let url = self.provisioned.queue_url(logical_id).expect("a queue of template.yaml").to_string();
        self.depth(&url).await
    }

    async fn depth(&self, url: &str) -> usize {
        use aws_sdk_sqs::types::QueueAttributeName;
        let attrs = self
            .backend
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        attrs.values().map(|v| v.parse::<usize>().unwrap_or(0)).sum()
    }
}

impl TestStack {
    /// Sends a request with extra headers; returns status, headers and JSON body.
    pub async fn call_with_headers(
        &self,
        method: Method,
        path: &str,
        key: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base_url)).header("x-api-key", key);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body);
        }
        let response = request.send().await.expect("request reaches the runner");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
        (status, headers, json)
    }
}
