//! Import N events: one by one, 16 concurrent clients, batch (1 × N, 10 × N/10), and the raw
//! SDK ceiling; the same with injected network latency; and the async paths.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argus_core::batch_writer::Write;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::common::{events, Bench, Stats};

/// One variant's result.
pub struct Measured {
    pub name: String,
    pub events: usize,
    pub wall: Stats,
    pub http_requests: u64,
    pub dynamodb_requests: u64,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.wall.median.as_secs_f64()
    }

    pub fn json(&self) -> Value {
        json!({
            "name": self.name, "events": self.events, "wall": self.wall.json(),
            "events_per_s": self.rate().round(), "http_requests": self.http_requests,
            "dynamodb_requests": self.dynamodb_requests,
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    OneByOne,
    Concurrent16,
    BatchOneCall,
    BatchTenCalls,
    JobAsync,
    RawSdk,
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::OneByOne => "a. POST /events one by one (until stored)",
            Variant::Concurrent16 => "b. POST /events, 16 concurrent clients (until stored)",
            Variant::BatchOneCall => "c. POST /batch/events, 1 call",
            Variant::BatchTenCalls => "c. POST /batch/events, 10 calls",
            Variant::JobAsync => "POST /batch/jobs (until stored)",
            Variant::RawSdk => "d. raw SDK BatchWriteItem (ceiling)",
        }
    }
}

/// Runs `variant` `runs` times with `count` events, each run on a fresh tenant. `base_url` is
/// the API (or a latency proxy in front of it).
pub async fn measure(
    bench: &Bench,
    variant: Variant,
    count: usize,
    runs: usize,
    base_url: &str,
) -> Result<Measured, String> {
    let mut walls = Vec::new();
    let (mut http_total, mut dynamodb_total) = (0u64, 0u64);
    for _ in 0..runs {
        let (tenant, key, session) = bench.tenant("bench").await?;
        let items = events(&session, count);
        let http = Arc::new(AtomicU64::new(0));
        let before = bench.counter.get();
        let started = Instant::now();
        match variant {
            Variant::OneByOne | Variant::Concurrent16 => {
                let clients = if variant == Variant::OneByOne { 1 } else { 16 };
                let results: Vec<Result<(), String>> = stream::iter(items.iter())
                    .map(|event| post(bench, base_url, "/events", &key, event, 202, &http))
                    .buffer_unordered(clients)
                    .collect()
                    .await;
                results.into_iter().collect::<Result<(), String>>()?;
                bench.wait_stored(&tenant, &session, count, Duration::from_secs(600)).await?;
            }
            Variant::BatchOneCall | Variant::BatchTenCalls => {
                let calls = if variant == Variant::BatchOneCall { 1 } else { 10 };
                for chunk in items.chunks(count.div_ceil(calls)) {
                    post(
                        bench,
                        base_url,
                        "/batch/events?return=failures",
                        &key,
                        &json!({"mode": "partial", "items": chunk}),
                        200,
                        &http,
                    )
                    .await?;
                }
            }
            Variant::JobAsync => {
                post(
                    bench,
                    base_url,
                    "/batch/jobs",
                    &key,
                    &json!({"operation": "create_events", "items": items}),
                    202,
                    &http,
                )
                .await?;
                bench.wait_stored(&tenant, &session, count, Duration::from_secs(600)).await?;
            }
            Variant::RawSdk => raw_batch_write(bench, &tenant, &items).await?,
        }
        walls.push(started.elapsed());
        http_total += http.load(Ordering::Relaxed);
        dynamodb_total += bench.counter.get() - before;
    }
    let runs = runs as u64;
    Ok(Measured {
        name: variant.name().to_string(),
        events: count,
        wall: Stats::of(walls),
        http_requests: http_total / runs,
        dynamodb_requests: dynamodb_total / runs,
    })
}

async fn post(
    bench: &Bench,
    base_url: &str,
    path: &str,
    key: &str,
    body: &Value,
    expect: u16,
    counter: &AtomicU64,
) -> Result<(), String> {
    counter.fetch_add(1, Ordering::Relaxed);
    let response = bench
        .http
        .post(format!("{base_url}{path}"))
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("POST {path}: {e}"))?;
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    if status != expect || (path.contains("return=failures") && !text.contains("\"failed\":0")) {
        return Err(format!("POST {path}: {status} {}", &text[..text.len().min(300)]));
    }
    Ok(())
}

/// The ceiling: the same items written with plain BatchWriteItem calls of 25, as many in flight
/// as the writer uses, no validation, no HTTP.
async fn raw_batch_write(bench: &Bench, tenant: &str, items: &[Value]) -> Result<(), String> {
    let now = argus_models::time::format(&argus_models::time::now());
    let mut requests = Vec::with_capacity(items.len());
    for payload in items {
        let input = argus_models::event::EventInput::parse(payload).map_err(|e| e.message())?;
        let id = argus_models::ids::new_id();
        let item = argus_core::events::event_item(
            tenant,
            &id,
            &input,
            &now,
            &now,
            Some(argus_models::stream::DEFAULT_RETENTION_DAYS),
            argus_core::keys::IndexShards::new(argus_models::stream::DEFAULT_WRITE_SHARDS, 0),
        )
        .map_err(|e| e.to_string())?;
        requests.push(Write::Put(item));
    }
    let concurrency = argus_core::batch_writer::BatchWriterConfig::default().concurrency;
    let chunks: Vec<Vec<aws_sdk_dynamodb::types::WriteRequest>> = requests
        .chunks(25)
        .map(|chunk| {
            chunk
                .iter()
                .filter_map(|w| match w {
                    Write::Put(item) => {
                        aws_sdk_dynamodb::types::PutRequest::builder().set_item(Some(item.clone())).build().ok()
                    }
                    Write::Delete(_) => None,
                })
                .map(|put| aws_sdk_dynamodb::types::WriteRequest::builder().put_request(put).build())
                .collect()
        })
        .collect();
    let results: Vec<Result<(), String>> = stream::iter(chunks)
        .map(|chunk| async move {
            let mut pending = chunk;
            while !pending.is_empty() {
                let out = bench
                    .backend
                    .dynamodb
                    .batch_write_item()
                    .request_items(&bench.backend.table, pending)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                pending = out.unprocessed_items.and_then(|mut u| u.remove(&bench.backend.table)).unwrap_or_default();
            }
            Ok(())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    results.into_iter().collect()
}

/// A loopback TCP proxy that delays every chunk in each direction by half the round trip.
pub async fn latency_proxy(upstream: &str, round_trip: Duration) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let url = format!("http://{}", listener.local_addr().map_err(|e| e.to_string())?);
    let upstream = upstream.trim_start_matches("http://").to_string();
    let half = round_trip / 2;
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { continue };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    delayed_copy(client_read, server_write, half),
                    delayed_copy(server_read, client_write, half)
                );
            });
        }
    });
    Ok(url)
}

async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    // One delay per burst: bytes that arrive together travel together, as on a real link.
    let mut idle = true;
    loop {
        let n = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if idle {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
        idle = n < buffer.len();
    }
    let _ = to.shutdown().await;
}
