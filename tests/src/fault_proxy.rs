//! A fault-injecting proxy between the AWS SDK and DynamoDB Local. Neither emulator ever
//! throttles or returns `UnprocessedItems`, so retry logic is tested through this proxy:
//! - `BatchWriteItem`: forwards a random subset of the write requests and returns the rest as
//!   `UnprocessedItems` (and always holds back requests whose key contains a marker);
//! - any operation: answers a throttling error or a 500 at configurable rates instead of
//!   forwarding.
//!
//! Randomness is seeded, so a failing seed reproduces. Counters record what was injected and
//! what reached DynamoDB Local.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

#[derive(Debug, Clone, Default)]
pub struct Faults {
    pub seed: u64,
    /// Probability that each BatchWriteItem write request is held back as unprocessed.
    pub unprocessed_rate: f64,
    /// Probability that a call to a targeted operation answers ProvisionedThroughputExceeded.
    pub throttle_rate: f64,
    /// Probability that a call to a targeted operation answers 500 InternalServerError.
    pub server_error_rate: f64,
    /// Operations the throttle/500 rates apply to (e.g. "BatchWriteItem"); empty = all.
    pub targets: Vec<String>,
    /// Write requests whose serialized form contains this string are always held back.
    pub always_unprocessed_marker: Option<String>,
    /// Any call whose body contains this string answers 500 InternalServerError.
    pub always_fail_marker: Option<String>,
    /// Added to every call before it is answered (a slow or distant DynamoDB).
    pub latency: std::time::Duration,
    /// Probability that a `TransactWriteItems` is cancelled with `TransactionConflict` (another
    /// transaction on one of its items), as DynamoDB does under concurrency.
    pub transaction_conflict_rate: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultStats {
    pub batch_write_calls: u64,
    pub writes_forwarded: u64,
    pub writes_held_back: u64,
    pub throttles: u64,
    pub server_errors: u64,
    pub forwarded_calls: u64,
    pub transaction_conflicts: u64,
    /// The most calls that were in the proxy at once (how concurrent the caller was).
    pub max_in_flight: u64,
}

struct State {
    faults: Faults,
    rng: fastrand::Rng,
    stats: FaultStats,
    in_flight: u64,
}

/// Counts one call in flight for as long as it lives.
struct InFlight<'a>(&'a Mutex<State>);

impl<'a> InFlight<'a> {
    fn enter(state: &'a Mutex<State>) -> Self {
        let mut guard = state.lock().expect("proxy state");
        guard.in_flight += 1;
        guard.stats.max_in_flight = guard.stats.max_in_flight.max(guard.in_flight);
        Self(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut guard) = self.0.lock() {
            guard.in_flight -= 1;
        }
    }
}

pub struct FaultProxy {
    pub url: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &str, faults: Faults) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(State {
            rng: fastrand::Rng::with_seed(faults.seed),
            faults,
            stats: FaultStats::default(),
            in_flight: 0,
        }));
        let upstream = upstream.to_string();
        argus_core::aws::install_tls_provider();
        let client = reqwest::Client::new();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (state, upstream, client) = (shared.clone(), upstream.clone(), client.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (state, upstream, client) = (state.clone(), upstream.clone(), client.clone());
                        async move { Ok::<_, Infallible>(handle(req, &state, &upstream, &client).await) }
                    });
                    let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        Self { url, state, task }
    }

    pub fn stats(&self) -> FaultStats {
        self.state.lock().expect("proxy state").stats.clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        let mut state = self.state.lock().expect("proxy state");
        state.rng = fastrand::Rng::with_seed(faults.seed);
        state.faults = faults;
    }

    /// A DynamoDB client that talks through this proxy.
    pub fn dynamodb_client(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&argus_core::aws::local_sdk_config())
                .endpoint_url(&self.url)
                .build(),
        )
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error_response(status: u16, kind: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"__type": format!("com.amazonaws.dynamodb.v20120810#{kind}"), "message": message}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amzn-errortype", kind)
        .body(Full::new(Bytes::from(body)))
        .expect("response")
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    state: &Mutex<State>,
    upstream: &str,
    client: &reqwest::Client,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return error_response(400, "SerializationException", "unreadable body");
    };
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let operation = target.rsplit('.').next().unwrap_or("").to_string();
    let _in_flight = InFlight::enter(state);

    let latency = state.lock().expect("proxy state").faults.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut body_to_send = body.clone();
    let mut held_back: Option<(String, Vec<Value>)> = None;
    {
        let mut state = state.lock().expect("proxy state");
        let State { faults, rng, stats, .. } = &mut *state;
        let targeted = faults.targets.is_empty() || faults.targets.contains(&operation);
        if let Some(marker) = &faults.always_fail_marker {
            if body.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                stats.server_errors += 1;
                return error_response(500, "InternalServerError", "injected 500 (marker)");
            }
        }
        if targeted && faults.throttle_rate > 0.0 && rng.f64() < faults.throttle_rate {
            stats.throttles += 1;
            return error_response(400, "ProvisionedThroughputExceededException", "injected throttle");
        }
        if operation == "TransactWriteItems"
            && faults.transaction_conflict_rate > 0.0
            && rng.f64() < faults.transaction_conflict_rate
        {
            stats.transaction_conflicts += 1;
            let parts = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
                .unwrap_or(1);
            let reasons: Vec<Value> = (0..parts)
                .map(|i| {
                    if i == 0 {
                        json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"})
                    } else {
                        json!({"Code": "None"})
                    }
                })
                .collect();
            let body = json!({
                "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "Message": "Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict]",
                "CancellationReasons": reasons,
            })
            .to_string();
            return Response::builder()
                .status(400)
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amzn-errortype", "TransactionCanceledException")
                .body(Full::new(Bytes::from(body)))
                .expect("response");
        }
        if targeted && faults.server_error_rate > 0.0 && rng.f64() < faults.server_error_rate {
            stats.server_errors += 1;
            return error_response(500, "InternalServerError", "injected 500");
        }
        if operation == "BatchWriteItem" {
            stats.batch_write_calls += 1;
            if let Ok(mut request) = serde_json::from_slice::<Value>(&body) {
                if let Some(items) = request["RequestItems"].as_object_mut() {
                    if let Some((table, writes)) = items.iter_mut().next() {
                        let all = writes.as_array().cloned().unwrap_or_default();
                        let (mut keep, mut hold) = (Vec::new(), Vec::new());
                        for write in all {
                            let forced = faults
                                .always_unprocessed_marker
                                .as_ref()
                                .is_some_and(|m| write.to_string().contains(m));
                            if forced || (faults.unprocessed_rate > 0.0 && rng.f64() < faults.unprocessed_rate) {
                                hold.push(write);
                            } else {
                                keep.push(write);
                            }
                        }
                        stats.writes_forwarded += keep.len() as u64;
                        stats.writes_held_back += hold.len() as u64;
                        if !hold.is_empty() {
                            *writes = Value::Array(keep.clone());
                            held_back = Some((table.clone(), hold));
                            if keep.is_empty() {
                                // Nothing to forward: answer as DynamoDB would, all unprocessed.
                                let (table, hold) = held_back.take().expect("held");
                                let body = json!({"UnprocessedItems": {table: hold}}).to_string();
                                return Response::builder()
                                    .header("content-type", "application/x-amz-json-1.0")
                                    .body(Full::new(Bytes::from(body)))
                                    .expect("response");
                            }
                            body_to_send = Bytes::from(request.to_string());
                        }
                    }
                }
            }
        }
        stats.forwarded_calls += 1;
    }

    let mut forward = client.request(parts.method.clone(), format!("{upstream}{}", parts.uri.path()));
    for (name, value) in &parts.headers {
        if name != hyper::header::CONTENT_LENGTH && name != hyper::header::HOST {
            forward = forward.header(name, value);
        }
    }
    let Ok(response) = forward.body(body_to_send).send().await else {
        return error_response(500, "InternalServerError", "upstream unreachable");
    };
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").cloned();
    let mut bytes = response.bytes().await.unwrap_or_default();
    if let Some((table, hold)) = held_back {
        if let Ok(mut answer) = serde_json::from_slice::<Value>(&bytes) {
            if status == 200 {
                let unprocessed = &mut answer["UnprocessedItems"];
                if !unprocessed.is_object() {
                    *unprocessed = json!({});
                }
                let entry = &mut unprocessed[table.as_str()];
                let mut merged = entry.as_array().cloned().unwrap_or_default();
                merged.extend(hold);
                *entry = Value::Array(merged);
                bytes = Bytes::from(answer.to_string());
            }
        }
    }
    let mut builder = Response::builder().status(status);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    builder.body(Full::new(bytes)).expect("response")
}
