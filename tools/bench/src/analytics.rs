//! Issue 12's analytics figures: a stream of N events (default 1,000,000) ingested in bulk and
//! fed through the aggregator from the table's change stream, then `GET /query/events` and
//! `POST /query/aggregate` over the whole window (p50/p95 of repeated calls), beside the time a
//! raw read-and-fold of the same window takes. The aggregate's answer is checked against that
//! fold: a fast wrong answer would not count.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use argus_core::rollups::{RawLimits, RawWindow};
use argus_local::table_stream::StreamConsumer;
use serde_json::{json, Value};

use crate::common::{ms, Bench};

const STREAM: &str = "bench-analytics";
const TYPES: usize = 5;

fn percentile(mut samples: Vec<Duration>, p: f64) -> Duration {
    samples.sort();
    let rank = ((samples.len() as f64) * p).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

async fn timed_calls<F, Fut>(runs: usize, mut call: F) -> Result<(Vec<Duration>, Value), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Value, String>>,
{
    let mut samples = Vec::with_capacity(runs);
    let mut last = Value::Null;
    for _ in 0..runs {
        let started = Instant::now();
        last = call().await?;
        samples.push(started.elapsed());
    }
    Ok((samples, last))
}

/// The stream's exact count of stored events, read directly (not through the API's counted
/// client, so the aggregator's request figure stays its own). Not found yet: 0.
async fn events_processed(bench: &Bench, tenant: &str) -> u64 {
    match argus_core::analytics::status(&bench.plain, tenant, STREAM).await {
        Ok(status) => status.events_processed,
        Err(argus_core::ServiceError::NotFound { .. }) => 0,
        Err(err) => {
            eprintln!("  stream status unavailable ({err}); draining on");
            0
        }
    }
}

pub async fn run(bench: &Bench, events: usize, runs: usize) -> Result<Value, String> {
    // ARGUS_BENCH_ANALYTICS_TENANT (with ARGUS_BENCH_TABLE): measure a stream loaded by an
    // earlier run again, over a 48 h window, without the hour-long load and aggregation.
    if let Ok(tenant) = std::env::var("ARGUS_BENCH_ANALYTICS_TENANT") {
        let key = argus_local::seed_tenant(&bench.plain, &tenant, None).await.map_err(|e| e.to_string())?.secret;
        let now = argus_models::time::now();
        let loaded = Loaded { tenant, key, window_start: now - chrono::Duration::hours(48), now };
        return measure(bench, &loaded, events, runs).await;
    }
    let (tenant, key, _) = bench.tenant("analytics").await?;
    let now = argus_models::time::now();
    let window_start = now - chrono::Duration::hours(24);
    // Events spread over the last 24 hours; 5 event types.
    let all: Vec<Value> = (0..events)
        .map(|i| {
            let offset_ms = (i as i64 * 86_400_000) / events.max(1) as i64;
            json!({
                "event_type": format!("type-{}", i % TYPES),
                "timestamp": argus_models::time::format(&(window_start + chrono::Duration::milliseconds(offset_ms + 1))),
                "data": {"n": i % 1000},
            })
        })
        .collect();

    // `data.n` is a summed field from the first event on, so its sum comes from the rollups too.
    let patched = bench
        .http
        .patch(format!("{}/streams/{STREAM}", bench.api_url))
        .header("x-api-key", &key)
        .json(&json!({"rollup_fields": ["data.n"]}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !patched.status().is_success() {
        return Err(format!("PATCH rollup_fields: {}", patched.status()));
    }

    let requests_before = bench.counter.get();
    let started = Instant::now();
    bench.ingest_batches(&key, STREAM, &all).await?;
    let ingest = started.elapsed();
    let ingest_requests = bench.counter.get() - requests_before;
    println!("  ingested {events} events in {:.1?} ({} DynamoDB requests)", ingest, ingest_requests);

    // The aggregator, fed the change stream as Lambda's event source would.
    let source = argus_stack::Template::load_repo()?
        .stream_consumers
        .into_iter()
        .find(|(binary, _)| binary == "argus-aggregator")
        .ok_or("template.yaml has no aggregator")?;
    let endpoint = bench.settings.dynamodb_endpoint.clone();
    let mut consumer = StreamConsumer::new(&source.0, &bench.settings.table, &endpoint, &source.1);
    let function = bench.functions.function(&source.0)?.clone();
    let requests_before = bench.counter.get();
    let started = Instant::now();
    let mut delivered = 0;
    let mut last_check = Instant::now();
    loop {
        let report = consumer.drain_once(&function).await?;
        delivered += report.records;
        if report.records == 0 && report.filtered_out == 0 {
            break;
        }
        // Past the events' own records the stream holds the aggregator's writes (markers and
        // cells), which the mapping's filter drops but a poller still reads: on DynamoDB Local
        // that tail takes longer than the events. Stop once the stream's status counts them all.
        if report.records == 0 || last_check.elapsed() > Duration::from_secs(30) {
            last_check = Instant::now();
            if events_processed(bench, &tenant).await >= events as u64 {
                break;
            }
        }
    }
    let processed = events_processed(bench, &tenant).await;
    if processed != events as u64 {
        return Err(format!("the change stream ran dry with {processed} of {events} events aggregated"));
    }
    let aggregated = started.elapsed();
    let aggregator_requests = bench.counter.get() - requests_before;
    println!(
        "  aggregator: {delivered} change records in {:.1?} ({:.0} records/s, {} DynamoDB requests)",
        aggregated,
        delivered as f64 / aggregated.as_secs_f64(),
        aggregator_requests
    );
    println!(
        "  (measure again later: ARGUS_BENCH_TABLE={} ARGUS_BENCH_ANALYTICS_TENANT={tenant})",
        bench.settings.table
    );
    let mut figures = measure(bench, &Loaded { tenant, key, window_start, now }, events, runs).await?;
    figures["ingest_s"] = json!(ingest.as_secs_f64());
    figures["ingest_dynamodb_requests"] = json!(ingest_requests);
    figures["aggregator"] =
        json!({"records": delivered, "seconds": aggregated.as_secs_f64(), "dynamodb_requests": aggregator_requests});
    Ok(figures)
}

/// A stream holding the bench's events, and the window they were spread over.
struct Loaded {
    tenant: String,
    key: String,
    window_start: chrono::DateTime<chrono::Utc>,
    now: chrono::DateTime<chrono::Utc>,
}

async fn measure(bench: &Bench, loaded: &Loaded, events: usize, runs: usize) -> Result<Value, String> {
    let (tenant, key, window_start, now) =
        (loaded.tenant.as_str(), loaded.key.as_str(), loaded.window_start, loaded.now);

    let get = |path: String| {
        let http = &bench.http;
        async move {
            let response = http.get(path).header("x-api-key", key).send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let body: Value = response.json().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{status}: {body}"));
            }
            Ok(body)
        }
    };
    let requests_before = bench.counter.get();
    let (query, page) =
        timed_calls(runs, || get(format!("{}/query/events?stream_id={STREAM}&limit=100", bench.api_url))).await?;
    let query_requests = (bench.counter.get() - requests_before) / runs as u64;
    if page["total_count"] != json!(events) {
        return Err(format!("total_count {} for {events} events", page["total_count"]));
    }

    let window = json!({
        "start": argus_models::time::format(&(window_start - chrono::Duration::seconds(30))),
        "end": argus_models::time::format(&(now + chrono::Duration::seconds(30))),
    });
    let body = json!({"stream_id": STREAM, "time_window": window, "aggregations": [{"operation": "count"}], "group_by": "event_type", "interval": "hour"});
    let post_body = |body: Value| {
        let (http, body) = (&bench.http, body.to_string());
        let url = format!("{}/query/aggregate", bench.api_url);
        async move {
            let response =
                http.post(url).header("x-api-key", key).body(body).send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let answer: Value = response.json().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{status}: {answer}"));
            }
            Ok(answer)
        }
    };
    let requests_before = bench.counter.get();
    let (aggregate, answer) = timed_calls(runs, || post_body(body.clone())).await?;
    let aggregate_requests = (bench.counter.get() - requests_before) / runs as u64;
    let sum_body = json!({"stream_id": STREAM, "time_window": window, "aggregations": [{"field": "data.n", "operation": "sum"}, {"field": "data.n", "operation": "avg"}]});
    let requests_before = bench.counter.get();
    let (summed, sum_answer) = timed_calls(runs, || post_body(sum_body.clone())).await?;
    let sum_requests = (bench.counter.get() - requests_before) / runs as u64;

    let p = |samples: &Vec<Duration>, q| ms(percentile(samples.clone(), q));
    println!("  {:<44} {:>10} {:>10} {:>14}", "", "p50", "p95", "DDB requests");
    for (label, samples, requests) in [
        ("GET /query/events (limit 100, total_count)", &query, query_requests),
        ("POST /query/aggregate (rollups, by type, hourly)", &aggregate, aggregate_requests),
        ("POST /query/aggregate (rollups, sum+avg data.n)", &summed, sum_requests),
    ] {
        println!("  {:<44} {:>8}ms {:>8}ms {:>14}", label, p(samples, 0.5), p(samples, 0.95), requests);
    }
    if let Ok(path) = std::env::var("ARGUS_BENCH_ANALYTICS_ANSWERS") {
        let answers = json!({"window": window, "by_type_hourly": answer, "sum_avg": sum_answer});
        std::fs::write(&path, answers.to_string()).map_err(|e| format!("{path}: {e}"))?;
    }
    let mut figures = json!({
        "events": events,
        "query_events_ms": {"p50": p(&query, 0.5), "p95": p(&query, 0.95), "runs": runs, "dynamodb_requests_per_call": query_requests},
        "aggregate_ms": {"p50": p(&aggregate, 0.5), "p95": p(&aggregate, 0.95), "runs": runs, "dynamodb_requests_per_call": aggregate_requests},
        "aggregate_sum_ms": {"p50": p(&summed, 0.5), "p95": p(&summed, 0.95), "runs": runs, "dynamodb_requests_per_call": sum_requests},
    });
    if std::env::var("ARGUS_BENCH_ANALYTICS_RAW").as_deref() == Ok("skip") {
        // Without the fold, at least the hourly counts must add up to the exact total.
        let counted: u64 = answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| row["values"][0]["value"].as_u64().unwrap_or(0))
            .sum();
        if counted != events as u64 {
            return Err(format!("the hourly counts add up to {counted}, not {events}"));
        }
        figures["raw_fold"] = json!("skipped");
        return Ok(figures);
    }

    // The same answer from the raw events: read the whole window, fold.
    let started = Instant::now();
    let from =
        argus_models::time::parse("start", window["start"].as_str().unwrap_or_default()).map_err(|e| e.message)?;
    let to = argus_models::time::parse("end", window["end"].as_str().unwrap_or_default()).map_err(|e| e.message)?;
    let mut fold: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut n_sum: u64 = 0;
    let limits = RawLimits { max_events: u64::MAX, max_bytes: u64::MAX };
    // DynamoDB Local serves one 1 MB page at a time, about 2 s each on a 1,000,000-event table:
    // 8 shards' pages queue past the SDK's 10 s attempt timeout. Give the fold time per page.
    let mut patient = bench.plain.clone();
    patient.dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&argus_core::aws::local_sdk_config())
            .endpoint_url(&bench.settings.dynamodb_endpoint)
            .timeout_config(
                aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(120))
                    .build(),
            )
            .build(),
    );
    let read = RawWindow {
        tenant,
        stream: STREAM,
        shards: argus_models::stream::DEFAULT_WRITE_SHARDS,
        from,
        to,
        event_type: None,
    }
    .fold_pages(&patient, None, limits, |page| {
        for item in &page {
            let event = argus_core::analytics::datastream_event(item)?;
            let at = argus_models::time::parse("t", event["timestamp"].as_str().unwrap_or_default())?;
            let hour = chrono::DateTime::from_timestamp(at.timestamp() / 3600 * 3600, 0).unwrap_or_default();
            let key = (argus_models::time::format(&hour), event["event_type"].as_str().unwrap_or_default().to_string());
            *fold.entry(key).or_insert(0) += 1;
            n_sum += event["data"]["n"].as_u64().unwrap_or(0);
        }
        Ok(())
    })
    .await;
    let read = match read {
        Ok(read) => read,
        // A read that fails (the emulator's pace, not a wrong answer) keeps the timings above.
        Err(err) => {
            println!("  raw read-and-fold failed: {err:?}");
            figures["raw_fold_error"] = json!(format!("{err:?}"));
            return Ok(figures);
        }
    };
    let raw = started.elapsed();
    let answered: BTreeMap<(String, String), u64> = answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            (
                (
                    row["interval_start"].as_str().unwrap_or_default().to_string(),
                    row["group"].as_str().unwrap_or_default().to_string(),
                ),
                row["values"][0]["value"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    if answered != fold || read != events as u64 {
        return Err(format!(
            "the aggregate differs from the raw fold ({read} raw events, {} rows vs {})",
            answered.len(),
            fold.len()
        ));
    }

    let answered_sum = sum_answer["results"][0]["values"][0]["value"].as_f64();
    let answered_avg = sum_answer["results"][0]["values"][1]["value"].as_f64();
    let avg = n_sum as f64 / read.max(1) as f64;
    if answered_sum != Some(n_sum as f64) || answered_avg.is_none_or(|a| (a - avg).abs() > 1e-9 * avg.max(1.0)) {
        return Err(format!(
            "data.n: sum {answered_sum:?}, avg {answered_avg:?} from the aggregate; {n_sum}, {avg} from the raw fold"
        ));
    }

    println!("  {:<44} {:>10.1?} (1 run, {read} events read)", "raw read-and-fold of the same window", raw);
    let ratio = (raw.as_secs_f64() / percentile(aggregate.clone(), 0.5).as_secs_f64() * 10.0).round() / 10.0;
    println!("  raw fold / aggregate p50 = {ratio}x; the aggregate equals the fold ({} rows)", answered.len());
    figures["raw_fold_ms"] = json!(ms(raw));
    figures["raw_over_aggregate_p50"] = json!(ratio);
    Ok(figures)
}
