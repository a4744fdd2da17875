//! `argus-bench`: measurements against the local stack (DynamoDB Local + SQS endpoint + the
//! local runner's code, release build). It prints tables and writes `target/bench/results.json`;
//! it never passes or fails on time. Every comparison is a ratio of runs in this invocation.
//!
//!   argus-bench all                  every section (what `make bench` runs)
//!   argus-bench writer-concurrency   the batch writer at 1–32 calls in flight
//!   argus-bench sustained            single events at a steady rate (ARGUS_BENCH_SUSTAINED_*)
//!   argus-bench queue                single events until stored: one client vs 16
//!   argus-bench analytics            issue 12's stream analytics (ARGUS_BENCH_ANALYTICS_*)
//!   argus-bench webhooks             error record stored → webhook received (ARGUS_BENCH_WEBHOOK_ERRORS, 50)
//!   argus-bench clients              the CLI's import vs raw bulk calls (ARGUS_BENCH_CLI_EVENTS, 100000)
//!   argus-bench exports              exports of N events per format (ARGUS_BENCH_EXPORT_EVENTS, 1000000)
//!
//! Knobs (env): ARGUS_BENCH_EVENTS (10000), ARGUS_BENCH_RUNS (3), ARGUS_BENCH_LATENCY_EVENTS
//! (1000), ARGUS_BENCH_ASYNC_EVENTS (1000),
//! ARGUS_BENCH_ASYNC_RUNS (1), ARGUS_BENCH_RTT_MS (20), ARGUS_BENCH_SPAWNS (20), ARGUS_BENCH_BIN_DIR
//! (target/release), ARGUS_BENCH_OUT (target/bench/results.json).

mod analytics;
mod clients;
mod coldstart;
mod common;
mod exports;
mod import;
mod peak;
mod sustained;
mod webhooks;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use argus_core::batch_writer::{write_all, BatchWriterConfig, Write};
use serde_json::{json, Value};

use common::{ms, Bench, Stats};
use import::{measure, Measured, Variant};

/// The `argus` CLI binary: beside the functions' (`ARGUS_BENCH_BIN_DIR`, default target/release).
fn cli_path() -> PathBuf {
    PathBuf::from(std::env::var("ARGUS_BENCH_BIN_DIR").unwrap_or_else(|_| "target/release".into())).join("argus")
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[global_allocator]
static ALLOCATOR: peak::Counting = peak::Counting;

#[tokio::main]
async fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let result = match which.as_str() {
        "all" => all().await,
        "writer-concurrency" => writer_concurrency().await.map(|_| ()),
        "queue" => queue_only().await,
        "analytics" => match Bench::start().await {
            Ok(bench) => analytics::run(
                &bench,
                knob("ARGUS_BENCH_ANALYTICS_EVENTS", 1_000_000),
                knob("ARGUS_BENCH_ANALYTICS_RUNS", 30),
            )
            .await
            .map(|_| ()),
            Err(err) => Err(err),
        },
        "clients" => match Bench::start().await {
            Ok(bench) => clients::run(&bench, knob("ARGUS_BENCH_CLI_EVENTS", 100_000), &cli_path()).await.map(|_| ()),
            Err(err) => Err(err),
        },
        "exports" => match Bench::start().await {
            Ok(bench) => exports::run(&bench, knob("ARGUS_BENCH_EXPORT_EVENTS", 1_000_000)).await.map(|_| ()),
            Err(err) => Err(err),
        },
        "webhooks" => match Bench::start().await {
            Ok(bench) => webhooks::run(&bench, knob("ARGUS_BENCH_WEBHOOK_ERRORS", 50)).await.map(|_| ()),
            Err(err) => Err(err),
        },
        "sustained" => match Bench::start().await {
            Ok(bench) => {
                let (rate, seconds) =
                    (knob("ARGUS_BENCH_SUSTAINED_RATE", 200), knob("ARGUS_BENCH_SUSTAINED_SECONDS", 20));
                match sustained::run(&bench, rate, seconds, sustained::Route::Events).await {
                    Ok(_) => sustained::run(&bench, rate, seconds, sustained::Route::IngestEvents).await.map(|_| ()),
                    Err(err) => Err(err),
                }
            }
            Err(err) => Err(err),
        },
        _ => Err("usage: argus-bench [all | writer-concurrency | queue | sustained | analytics | webhooks | clients | exports]"
            .to_string()),
    };
    if let Err(err) = result {
        eprintln!("argus-bench: {err}");
        std::process::exit(2);
    }
}

/// Single events through the queue until stored: one client, then 16 concurrent ones.
async fn queue_only() -> Result<(), String> {
    let events = knob("ARGUS_BENCH_ASYNC_EVENTS", 2_000);
    let bench = Bench::start().await?;
    let a = measure(&bench, Variant::OneByOne, events, 1, &bench.api_url).await?;
    let b = measure(&bench, Variant::Concurrent16, events, 1, &bench.api_url).await?;
    print_rows(&[&a, &b]);
    println!("  16 concurrent clients vs one, until stored: {}x the events/s (target: at least 1x)", ratio(&a, &b));
    Ok(())
}

fn print_rows(rows: &[&Measured]) {
    println!(
        "  {:<52} {:>9} {:>9} {:>9} {:>10} {:>8} {:>9}",
        "variant", "median", "min", "max", "events/s", "HTTP", "DynamoDB"
    );
    for m in rows {
        println!(
            "  {:<52} {:>9} {:>9} {:>9} {:>10.0} {:>8} {:>9}",
            m.name,
            format!("{:.2?}", m.wall.median),
            format!("{:.2?}", m.wall.min),
            format!("{:.2?}", m.wall.max),
            m.rate(),
            m.http_requests,
            m.dynamodb_requests
        );
    }
}

/// How many times faster `fast` moves events than `slow` (events/s ratio: equal to the wall-time
/// ratio when both moved the same number of events).
fn ratio(slow: &Measured, fast: &Measured) -> f64 {
    (fast.rate() / slow.rate() * 100.0).round() / 100.0
}

async fn all() -> Result<(), String> {
    let events = knob("ARGUS_BENCH_EVENTS", 10_000);
    let runs = knob("ARGUS_BENCH_RUNS", 3);
    // The one-message-per-event variants are bound by the SQS emulator: moto's receive slows
    // with the queue's backlog (about 10,000 requests/min falling to 400/min with 10,000
    // messages queued), so they run on fewer events and fewer runs; ratios compare events/s.
    let async_events = knob("ARGUS_BENCH_ASYNC_EVENTS", 1_000);
    let async_runs = knob("ARGUS_BENCH_ASYNC_RUNS", 1);
    let latency_events = knob("ARGUS_BENCH_LATENCY_EVENTS", 1_000);
    let rtt = Duration::from_millis(knob("ARGUS_BENCH_RTT_MS", 20) as u64);
    let spawns = knob("ARGUS_BENCH_SPAWNS", 20);
    let started = Instant::now();
    let bench = Bench::start().await?;
    let mut results = serde_json::Map::new();

    println!("\n1. Import {events} events (median of {runs} runs; a and b: {async_events} events, {async_runs} run; fresh tenant each run)");
    let a = measure(&bench, Variant::OneByOne, async_events, async_runs, &bench.api_url).await?;
    let b = measure(&bench, Variant::Concurrent16, async_events, async_runs, &bench.api_url).await?;
    let c1 = measure(&bench, Variant::BatchOneCall, events, runs, &bench.api_url).await?;
    let c10 = measure(&bench, Variant::BatchTenCalls, events, runs, &bench.api_url).await?;
    let d = measure(&bench, Variant::RawSdk, events, runs, &bench.api_url).await?;
    print_rows(&[&a, &b, &c1, &c10, &d]);
    let ratios = json!({"a_over_c": ratio(&a, &c1), "b_over_c": ratio(&b, &c1), "c_over_d": ratio(&c1, &d), "c10_over_d": ratio(&c10, &d)});
    println!(
        "  ratios: a/c = {}x, b/c = {}x, c/d = {}x (c with 10 calls: {}x of d)",
        ratios["a_over_c"], ratios["b_over_c"], ratios["c_over_d"], ratios["c10_over_d"]
    );
    results.insert("import".into(), json!({"events": events, "runs": runs, "async_events": async_events, "async_runs": async_runs, "variants": [a.json(), b.json(), c1.json(), c10.json(), d.json()], "ratios": ratios}));

    println!(
        "\n2. With {} ms round trip between client and API ({latency_events} events, median of {runs} runs; a: {async_runs} run)",
        rtt.as_millis()
    );
    let proxy = import::latency_proxy(&bench.api_url, rtt).await?;
    let la = measure(&bench, Variant::OneByOne, latency_events, async_runs, &proxy).await?;
    let lb = measure(&bench, Variant::Concurrent16, latency_events, runs, &proxy).await?;
    let lc = measure(&bench, Variant::BatchOneCall, latency_events, runs, &proxy).await?;
    print_rows(&[&la, &lb, &lc]);
    let lratios = json!({"a_over_c": ratio(&la, &lc), "b_over_c": ratio(&lb, &lc)});
    println!("  ratios: a/c = {}x, b/c = {}x", lratios["a_over_c"], lratios["b_over_c"]);
    results.insert("latency".into(), json!({"round_trip_ms": rtt.as_millis() as u64, "events": latency_events, "runs": runs, "variants": [la.json(), lb.json(), lc.json()], "ratios": lratios}));

    println!("\n3. Async: from first request until all stored (jobs: {events} events, median of {runs} runs; single POSTs: b above)");
    let job = measure(&bench, Variant::JobAsync, events, runs, &bench.api_url).await?;
    print_rows(&[&job, &b]);
    println!("  ratio: POST /events x16 / POST /batch/jobs = {}x", ratio(&b, &job));
    results.insert(
        "async".into(),
        json!({"events": events, "variants": [job.json(), b.json()], "single_over_job": ratio(&b, &job)}),
    );

    let sustained_rate = knob("ARGUS_BENCH_SUSTAINED_RATE", 200);
    let sustained_seconds = knob("ARGUS_BENCH_SUSTAINED_SECONDS", 20);
    println!(
        "\n3b. Single events at a steady {sustained_rate}/s for {sustained_seconds} s (make dev's target: every event stored within 1 s, p95)"
    );
    results.insert(
        "sustained".into(),
        sustained::run(&bench, sustained_rate, sustained_seconds, sustained::Route::Events).await?,
    );
    // DataStream's route, same pipeline (DataStream Pro claims p95 < 100 ms ingest to stored).
    results.insert(
        "sustained_ingest_events".into(),
        sustained::run(&bench, sustained_rate, sustained_seconds, sustained::Route::IngestEvents).await?,
    );
    println!("  16 concurrent clients vs one, until stored: {}x the events/s (target: at least 1x)", ratio(&a, &b));
    results.insert("concurrent16_over_one".into(), json!(ratio(&a, &b)));

    let bin_dir = PathBuf::from(std::env::var("ARGUS_BENCH_BIN_DIR").unwrap_or_else(|_| "target/release".into()));
    println!(
        "\n4. Cold start ({spawns} spawns per function against a loopback Lambda Runtime API; {})",
        bin_dir.display()
    );
    results.insert("cold_start".into(), cold_start_section(&bench, &bin_dir, spawns).await?);

    println!("\n5. Size and memory");
    results.insert("size_memory".into(), size_section(&bench, &bin_dir).await?);

    let webhook_errors = knob("ARGUS_BENCH_WEBHOOK_ERRORS", 50);
    println!("\n7. Webhook delivery latency, {webhook_errors} error notifications (issue 13)");
    results.insert("webhooks".into(), webhooks::run(&bench, webhook_errors).await?);

    let cli_events = knob("ARGUS_BENCH_CLI_EVENTS", 100_000);
    println!("\n8. The argus CLI importing {cli_events} events, against raw bulk calls; gzip's bytes (issue 15)");
    results.insert("clients".into(), clients::run(&bench, cli_events, &cli_path()).await?);

    let export_events = knob("ARGUS_BENCH_EXPORT_EVENTS", 1_000_000);
    println!("\n9. Exports of {export_events} events, per format: time, bytes, peak memory (issue 16)");
    results.insert("exports".into(), exports::run(&bench, export_events).await?);

    let analytics_events = knob("ARGUS_BENCH_ANALYTICS_EVENTS", 1_000_000);
    println!("\n6. Analytics over {analytics_events} events of one stream (issue 12)");
    results.insert(
        "analytics".into(),
        analytics::run(&bench, analytics_events, knob("ARGUS_BENCH_ANALYTICS_RUNS", 30)).await?,
    );

    let machine = json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "commit": std::env::var("ARGUS_BENCH_COMMIT").unwrap_or_default(),
        "date": argus_models::time::format(&argus_models::time::now()),
        "elapsed_s": started.elapsed().as_secs(),
    });
    results.insert("machine".into(), machine);
    let out = PathBuf::from(std::env::var("ARGUS_BENCH_OUT").unwrap_or_else(|_| "target/bench/results.json".into()));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    std::fs::write(&out, serde_json::to_string_pretty(&Value::Object(results)).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    println!("\nwrote {} ({:?} in all)", out.display(), started.elapsed());
    Ok(())
}

const FIXTURE_KEY: &str = "argus_fixture_key_do_not_use_in_production";
const FIXTURE_SESSION: &str = "0190f0a2-5f5e-7c3a-9a1b-2c3d4e5f6a7b";

/// (binary, the events/ fixture it is invoked with)
const FUNCTIONS: [(&str, &str); 7] = [
    ("argus-authorizer", "authorizer/known-key.json"),
    ("argus-health", "health/health.json"),
    ("argus-sessions", "sessions/create.json"),
    ("argus-events", "events/ingest-the-eye.json"),
    ("argus-errors", "errors/list.json"),
    ("argus-processor", "processor/batch.json"),
    ("argus-batch", "batch/create-partial.json"),
];

fn lambda_env(bench: &Bench, binary: &str) -> Vec<(String, String)> {
    [
        ("ARGUS_TABLE", bench.backend.table.as_str()),
        ("ARGUS_QUEUE_URL", bench.backend.queue_url.as_str()),
        ("AWS_ENDPOINT_URL_DYNAMODB", bench.settings.dynamodb_endpoint.as_str()),
        ("AWS_ENDPOINT_URL_SQS", bench.settings.sqs_endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "local"),
        ("AWS_SECRET_ACCESS_KEY", "local"),
        ("AWS_LAMBDA_FUNCTION_NAME", binary),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench"),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "bench"),
        ("AWS_LAMBDA_LOG_LEVEL", "error"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn fixture(name: &str) -> Result<String, String> {
    let path = argus_stack::template::repo_root().join("events").join(name);
    std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
}

async fn seed_fixtures(bench: &Bench) -> Result<(), String> {
    let _ = argus_local::seed_tenant(&bench.plain, "fixtures", Some(FIXTURE_KEY.into())).await;
    let id = uuid::Uuid::parse_str(FIXTURE_SESSION).map_err(|e| e.to_string())?;
    match argus_core::sessions::create_with_id(&bench.plain, "fixtures", id, Default::default()).await {
        Ok(_) | Err(argus_core::ServiceError::Conflict { .. }) => Ok(()),
        Err(err) => Err(err.to_string()),
    }
}

async fn cold_start_section(bench: &Bench, bin_dir: &std::path::Path, spawns: usize) -> Result<Value, String> {
    seed_fixtures(bench).await?;
    println!(
        "  {:<18} {:>10} {:>10} {:>10} {:>14} {:>10}  answer",
        "function", "init p50", "init min", "init max", "1st call p50", "1st max"
    );
    let mut rows = Vec::new();
    for (binary, event_file) in FUNCTIONS {
        let path = bin_dir.join(binary);
        if !path.exists() {
            return Err(format!(
                "{} is missing: build with `cargo build --release --workspace --bins`",
                path.display()
            ));
        }
        let (init, first, answer) =
            coldstart::cold_starts(&path, &lambda_env(bench, binary), &fixture(event_file)?, spawns).await?;
        println!(
            "  {binary:<18} {:>10} {:>10} {:>10} {:>14} {:>10}  {}",
            format!("{:.1?}", init.median),
            format!("{:.1?}", init.min),
            format!("{:.1?}", init.max),
            format!("{:.1?}", first.median),
            format!("{:.1?}", first.max),
            coldstart::outcome(&answer)
        );
        rows.push(json!({"function": binary, "init": init.json(), "first_invocation": first.json(), "answer": coldstart::outcome(&answer)}));
    }
    Ok(Value::Array(rows))
}

async fn size_section(bench: &Bench, bin_dir: &std::path::Path) -> Result<Value, String> {
    let mut sizes = serde_json::Map::new();
    println!("  stripped release binaries ({}, {}):", std::env::consts::ARCH, bin_dir.display());
    for (binary, _) in FUNCTIONS {
        let bytes = std::fs::metadata(bin_dir.join(binary)).map_err(|e| e.to_string())?.len();
        println!("    {binary:<18} {:>6.2} MB", bytes as f64 / 1_048_576.0);
        sizes.insert(binary.into(), json!(bytes));
    }
    // The batch function handling one 10,000-item request, as a Lambda process.
    let items: Vec<Value> = common::events(FIXTURE_SESSION, 10_000);
    let mut event: Value = serde_json::from_str(&fixture("batch/create-partial.json")?).map_err(|e| e.to_string())?;
    event["body"] = Value::String(json!({"mode": "partial", "items": items}).to_string());
    let spawned =
        coldstart::run_once(&bin_dir.join("argus-batch"), &lambda_env(bench, "argus-batch"), &event.to_string())
            .await?;
    let answer: Value = serde_json::from_str(&spawned.response).unwrap_or(Value::Null);
    let report: Value = answer["body"].as_str().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    let rss_mib = spawned.peak_rss_kib.map(|kib| kib as f64 / 1024.0);
    println!(
        "  peak RSS of argus-batch handling one 10,000-item POST /batch/events: {} (answer {}, {} succeeded, {:.2?})",
        rss_mib.map(|m| format!("{m:.1} MiB")).unwrap_or_else(|| "not measured".into()),
        answer["statusCode"],
        report["succeeded"],
        spawned.first_invocation
    );
    let arm64 = "not measured here (cargo lambda build --release --arm64 is not part of make bench)";
    println!("  arm64 zip sizes: {arm64}");
    Ok(json!({
        "binary_bytes": sizes,
        "batch_10000_items": {"peak_rss_kib": spawned.peak_rss_kib, "status": answer["statusCode"], "succeeded": report["succeeded"], "ms": ms(spawned.first_invocation)},
        "arm64_zip": arm64,
    }))
}

/// The batch writer at several concurrencies (docs/benchmarks.md, "Batch writer concurrency").
async fn writer_concurrency() -> Result<Value, String> {
    const ITEMS: usize = 10_000;
    let runs = knob("ARGUS_BENCH_RUNS", 3);
    let bench = Bench::start().await?;
    println!("batch writer: {ITEMS} event items (table + 3 GSIs) to DynamoDB Local, median of {runs} runs");
    println!("{:>12} {:>10} {:>10} {:>10} {:>12}", "concurrency", "median", "min", "max", "items/s");
    let mut rows = Vec::new();
    let mut baseline = None;
    for concurrency in [1usize, 2, 4, 8, 16, 32] {
        let mut walls = Vec::new();
        for run in 0..runs {
            let tenant = format!("writer{concurrency}x{run}");
            let now = argus_models::time::format(&argus_models::time::now());
            let writes: Vec<Write> = common::events(&uuid::Uuid::now_v7().to_string(), ITEMS)
                .iter()
                .map(|payload| {
                    let input = argus_models::event::EventInput::parse(payload).map_err(|e| e.message())?;
                    let id = argus_models::ids::new_id();
                    argus_core::events::event_item(
                        &tenant,
                        &id,
                        &input,
                        &now,
                        &now,
                        Some(argus_models::stream::DEFAULT_RETENTION_DAYS),
                        argus_core::keys::IndexShards::new(argus_models::stream::DEFAULT_WRITE_SHARDS, 0),
                    )
                    .map(Write::Put)
                    .map_err(|e| e.to_string())
                })
                .collect::<Result<_, String>>()?;
            let config = BatchWriterConfig { concurrency, ..BatchWriterConfig::default() };
            let started = Instant::now();
            let (outcomes, _) = write_all(&bench.plain.dynamodb, &bench.plain.table, &writes, &config).await;
            walls.push(started.elapsed());
            if !outcomes.iter().all(|o| o.is_written()) {
                return Err("a write failed during the benchmark".into());
            }
        }
        let stats = Stats::of(walls);
        let rate = ITEMS as f64 / stats.median.as_secs_f64();
        let speedup = rate / *baseline.get_or_insert(rate);
        println!(
            "{concurrency:>12} {:>10.2?} {:>10.2?} {:>10.2?} {rate:>12.0}  ({speedup:.2}x concurrency 1)",
            stats.median, stats.min, stats.max
        );
        rows.push(json!({"concurrency": concurrency, "wall": stats.json(), "items_per_s": rate.round()}));
    }
    Ok(Value::Array(rows))
}
