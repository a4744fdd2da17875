//! Issue 16's export figures: a stream of N events (default 1,000,000) ingested in bulk, then
//! exported once per format through the export function (the queue drained in this process, as
//! `make dev` does). Per format: wall time until completed, events/s, file bytes, files, slices,
//! DynamoDB requests, and the process's peak heap growth while the export ran (the bench's
//! allocator counts every allocation; the API is idle meanwhile, so the growth is the export
//! function's working memory).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::Bench;
use crate::peak;

const STREAM: &str = "bench-export";
const CATEGORIES: [&str; 3] = ["page", "click", "purchase"];

pub async fn run(bench: &Bench, events: usize) -> Result<Value, String> {
    let (_, key, _) = bench.tenant("export").await?;
    let now = argus_models::time::now();
    let window_start = now - chrono::Duration::hours(24);
    let started = Instant::now();
    // Typical events: a type, a category, a small JSON object (≈ 200 bytes of data).
    let all: Vec<Value> = (0..events)
        .map(|i| {
            let offset_ms = (i as i64 * 86_400_000) / events.max(1) as i64;
            json!({
                "event_type": format!("type-{}", i % 5),
                "category": CATEGORIES[i % 3],
                "timestamp": argus_models::time::format(&(window_start + chrono::Duration::milliseconds(offset_ms + 1))),
                "data": {"n": i, "path": format!("/products/{}", i % 500), "value": (i * 7) % 1000, "user": format!("u{}", i % 20_000)},
            })
        })
        .collect();
    bench.ingest_batches(&key, STREAM, &all).await?;
    drop(all);
    println!("  ingested {events} events in {:.1?}", started.elapsed());

    let window = json!({"start": argus_models::time::format(&window_start), "end": argus_models::time::format(&(now + chrono::Duration::minutes(1)))});
    println!(
        "  {:<16} {:>9} {:>10} {:>12} {:>6} {:>7} {:>10} {:>11}",
        "format", "time", "events/s", "bytes", "files", "slices", "DynamoDB", "peak heap"
    );
    let mut rows = Vec::new();
    for (format, compression) in
        [("ndjson", "none"), ("ndjson", "gzip"), ("csv", "gzip"), ("parquet", "gzip"), ("avro", "gzip")]
    {
        let body = json!({"stream_id": STREAM, "time_window": window, "format": format, "compression": compression});
        let requests_before = bench.counter.get();
        let baseline = peak::reset();
        let started = Instant::now();
        let response = bench
            .http
            .post(format!("{}/exports", bench.api_url))
            .header("x-api-key", &key)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let created: Value = response.json().await.map_err(|e| e.to_string())?;
        let id = created["export_id"].as_str().ok_or(format!("no export: {created}"))?.to_string();
        let done = loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let status: Value = bench
                .http
                .get(format!("{}/exports/{id}", bench.api_url))
                .header("x-api-key", &key)
                .send()
                .await
                .map_err(|e| e.to_string())?
                .json()
                .await
                .map_err(|e| e.to_string())?;
            match status["status"].as_str() {
                Some("completed") => break status,
                Some("failed") => return Err(format!("export failed: {status}")),
                _ => {}
            }
        };
        let elapsed = started.elapsed();
        let heap = peak::peak().saturating_sub(baseline);
        let requests = bench.counter.get() - requests_before;
        if done["events_exported"] != json!(events) {
            return Err(format!("{format}: {} events exported of {events}", done["events_exported"]));
        }
        let name = format!("{format}/{compression}");
        println!(
            "  {:<16} {:>9} {:>10.0} {:>12} {:>6} {:>7} {:>10} {:>8.1} MiB",
            name,
            format!("{elapsed:.1?}"),
            events as f64 / elapsed.as_secs_f64(),
            done["bytes_written"],
            done["files_written"],
            done["slices"],
            requests,
            heap as f64 / (1024.0 * 1024.0)
        );
        rows.push(json!({
            "format": name, "seconds": elapsed.as_secs_f64(), "bytes": done["bytes_written"],
            "files": done["files_written"], "slices": done["slices"], "dynamodb_requests": requests,
            "peak_heap_bytes": heap,
        }));
    }
    println!("  (peak heap: growth of the process's live heap while the export ran; the bound is one 8 MiB part, one Parquet row group of at most 16 MiB of rows, and one page of reads)");
    Ok(json!({"events": events, "formats": rows}))
}
