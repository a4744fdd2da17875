//! Issue 15's figures: the `argus` CLI importing N events from an NDJSON file, against the same
//! events sent as raw `POST /batch/events` calls (uncompressed, as a script would), both with 4
//! calls in flight; and what gzip does to the bytes sent. Measured in one run, on one stack.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use crate::common::{events, Bench};

const CONCURRENCY: usize = 4;
const BATCH: usize = 10_000;

fn gzip(bytes: &[u8]) -> usize {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(bytes);
    encoder.finish().map(|v| v.len()).unwrap_or(0)
}

pub async fn run(bench: &Bench, count: usize, cli: &Path) -> Result<Value, String> {
    // The CLI: a file on disk, read, batched from GET /limits, gzip-compressed.
    let (tenant_cli, key_cli, session_cli) = bench.tenant("cli").await?;
    let dir = std::path::PathBuf::from("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let file = dir.join("cli-import.ndjson");
    let _ = std::fs::remove_file(dir.join("cli-import.ndjson.argus-checkpoint"));
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file).map_err(|e| e.to_string())?);
        for event in events(&session_cli, count) {
            writeln!(out, "{event}").map_err(|e| e.to_string())?;
        }
    }
    let requests_before = bench.counter.get();
    let started = Instant::now();
    let output = tokio::process::Command::new(cli)
        .args(["import", file.to_str().unwrap_or_default(), "--url", &bench.api_url, "--api-key", &key_cli])
        .args(["--concurrency", &CONCURRENCY.to_string(), "--batch-size", &BATCH.to_string()])
        .env("ARGUS_CONFIG", "/nonexistent")
        .output()
        .await
        .map_err(|e| format!("running {}: {e}", cli.display()))?;
    let cli_time = started.elapsed();
    let cli_requests = bench.counter.get() - requests_before;
    if !output.status.success() {
        return Err(format!("the CLI failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let said = String::from_utf8_lossy(&output.stdout).trim().to_string();
    println!("  argus import said: {said}");
    // The calls the CLI made, as it counts them ("…, N HTTP calls)"): resends included.
    let cli_calls: u64 = said
        .rsplit_once(", ")
        .and_then(|(_, tail)| tail.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("the CLI's summary has no call count: {said}"))?;
    bench.wait_stored(&tenant_cli, &session_cli, count, Duration::from_secs(60)).await?;
    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(dir.join("cli-import.ndjson.argus-checkpoint"));
    let _ = std::fs::remove_file(dir.join("cli-import.ndjson.failed.ndjson"));

    // Raw calls: the same events, 10,000 a call, uncompressed JSON.
    let (tenant_raw, key_raw, session_raw) = bench.tenant("raw").await?;
    let items = events(&session_raw, count);
    let bodies: Vec<Vec<u8>> =
        items.chunks(BATCH).map(|chunk| serde_json::to_vec(&json!({"items": chunk})).unwrap_or_default()).collect();
    let raw_bytes: usize = bodies.iter().map(Vec::len).sum();
    let gzip_bytes: usize = bodies.iter().map(|b| gzip(b)).sum();
    let requests_before = bench.counter.get();
    let started = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(bodies.into_iter().map(|body| {
        let request = bench
            .http
            .post(format!("{}/batch/events", bench.api_url))
            .header("x-api-key", &key_raw)
            .header("content-type", "application/json")
            .body(body);
        async move { request.send().await.map(|r| r.status().as_u16()).unwrap_or(0) }
    }))
    .buffer_unordered(CONCURRENCY)
    .collect()
    .await;
    let raw_time = started.elapsed();
    let raw_requests = bench.counter.get() - requests_before;
    if statuses.iter().any(|s| *s != 200) {
        return Err(format!("raw bulk calls answered {statuses:?}"));
    }
    bench.wait_stored(&tenant_raw, &session_raw, count, Duration::from_secs(60)).await?;

    let rate = |time: Duration| count as f64 / time.as_secs_f64().max(0.001);
    let calls = count.div_ceil(BATCH);
    println!("  {:<44} {:>10} {:>12} {:>14} {:>16}", "", "time", "events/s", "HTTP requests", "DynamoDB requests");
    println!(
        "  {:<44} {:>8.2} s {:>12.0} {:>14} {:>16}",
        "argus import (file → stored, gzip)",
        cli_time.as_secs_f64(),
        rate(cli_time),
        cli_calls,
        cli_requests
    );
    println!(
        "  {:<44} {:>8.2} s {:>12.0} {:>14} {:>16}",
        "raw POST /batch/events (in memory, plain JSON)",
        raw_time.as_secs_f64(),
        rate(raw_time),
        calls,
        raw_requests
    );
    let ratio = rate(cli_time) / rate(raw_time);
    println!("  CLI vs raw calls: {ratio:.2}x the events/s (both 10,000 items a call, 4 in flight; the CLI also reads, parses and compresses the file)");
    println!(
        "  bytes sent for {count} events: {raw_bytes} plain JSON, {gzip_bytes} gzip ({:.1}x smaller)",
        raw_bytes as f64 / gzip_bytes.max(1) as f64
    );
    Ok(json!({
        "events": count,
        "cli": {"seconds": cli_time.as_secs_f64(), "events_per_s": rate(cli_time), "http_requests": cli_calls,
                "dynamodb_requests": cli_requests},
        "raw": {"seconds": raw_time.as_secs_f64(), "events_per_s": rate(raw_time), "http_requests": calls,
                "dynamodb_requests": raw_requests},
        "cli_over_raw": ratio,
        "bytes": {"plain": raw_bytes, "gzip": gzip_bytes, "ratio": raw_bytes as f64 / gzip_bytes.max(1) as f64},
    }))
}
