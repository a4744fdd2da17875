//! Issue 13's figure: webhook delivery latency, from the moment an error record is stored
//! (its `created_at`) to the receiver reading the `stream.processing_error` notification, p50
//! and p95. Errors are sent one at a time and the stream's window is set to zero, so each
//! error is its own leading notification (what the first error of a quiet stream gets; the
//! window only delays the errors after it). Path: processor → table change stream →
//! aggregator → notifier queue → fan-out → deliver message → notifier → receiver.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::common::Bench;

/// A receiver that answers 204 and notes when each request arrived (epoch ms).
async fn receiver() -> Result<(String, Arc<Mutex<Vec<i64>>>), String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?;
    let url = format!("http://{}/hook", listener.local_addr().map_err(|e| e.to_string())?);
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let shared = arrivals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let arrivals = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let arrivals = arrivals.clone();
                    async move {
                        if let Ok(mut list) = arrivals.lock() {
                            list.push(argus_models::time::now().timestamp_millis());
                        }
                        Ok::<_, Infallible>(
                            Response::builder().status(204).body(Full::new(Bytes::new())).unwrap_or_default(),
                        )
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Ok((url, arrivals))
}

fn percentile(mut samples: Vec<f64>, p: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let rank = ((samples.len() as f64) * p).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

pub async fn run(bench: &Bench, errors: usize) -> Result<Value, String> {
    let (tenant, key, _) = bench.tenant("webhooks").await?;
    let (url, arrivals) = receiver().await?;
    let stream = "bench-webhooks";
    let response = bench
        .http
        .post(format!("{}/webhooks", bench.api_url))
        .header("x-api-key", &key)
        .json(&json!({"url": url, "events": ["stream.processing_error"], "stream_id": stream}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status().as_u16() != 201 {
        return Err(format!("creating the webhook: {}", response.text().await.unwrap_or_default()));
    }
    // The table's change stream → aggregator, as Lambda's event source (and make dev) runs it.
    for consumer in argus_local::table_stream::consumers(
        &argus_stack::Template::load_repo()?,
        &bench.backend.table,
        &bench.settings.dynamodb_endpoint,
    ) {
        let function = bench.functions.function(&consumer.binary)?.clone();
        tokio::spawn(consumer.run(function));
    }
    let mut latencies = Vec::with_capacity(errors);
    for i in 0..errors {
        // Accepted now, refused by the processor (no data): an error record of the stream.
        let bad = json!({"stream_id": stream, "event_type": "bench", "timestamp": argus_models::time::format(&argus_models::time::now()), "data": {}});
        let status = bench
            .http
            .post(format!("{}/ingest/events", bench.api_url))
            .header("x-api-key", &key)
            .json(&bad)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .status();
        if status.as_u16() != 202 {
            return Err(format!("ingest answered {status}"));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let arrived = loop {
            let seen = arrivals.lock().map_err(|_| "poisoned")?.get(i).copied();
            if let Some(at) = seen {
                break at;
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("notification {} did not arrive within 60 s", i + 1));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let newest = argus_core::errors::list(&bench.plain, &tenant, &Default::default(), 1, None)
            .await
            .map_err(|e| e.to_string())?;
        let created = newest
            .items
            .first()
            .and_then(|e| serde_json::to_value(e).ok())
            .and_then(|e| e["created_at"].as_str().map(str::to_string))
            .ok_or("no error record")?;
        let stored = argus_models::time::parse("created_at", &created).map_err(|e| e.message)?.timestamp_millis();
        latencies.push((arrived - stored) as f64);
    }
    let (p50, p95) = (percentile(latencies.clone(), 0.5), percentile(latencies.clone(), 0.95));
    println!(
        "  error record stored → webhook received, {errors} notifications: p50 {p50:.0} ms, p95 {p95:.0} ms (DataStream: p95 < 1 s)"
    );
    Ok(
        json!({"notifications": errors, "p50_ms": p50, "p95_ms": p95, "max_ms": latencies.iter().cloned().fold(0.0, f64::max)}),
    )
}
