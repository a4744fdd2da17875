//! `argus-bench`: measurements against the local stack. It prints figures and ratios measured
//! in one run; it never passes or fails on time.
//!
//!   argus-bench writer-concurrency   the shared batch writer at several concurrencies
//!
//! Endpoints: ARGUS_DYNAMODB_ENDPOINT / ARGUS_SQS_ENDPOINT (as the local runner).

use std::time::{Duration, Instant};

use argus_core::batch_writer::{write_all, BatchWriterConfig, Write};
use argus_local::stack::provision_backend;
use argus_local::{connect_local, wait_for_emulators, StackSettings};
use argus_models::event::EventInput;
use argus_stack::Template;
use serde_json::json;

const RUNS: usize = 3;
const ITEMS: usize = 10_000;

#[tokio::main]
async fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let result = match which.as_str() {
        "writer-concurrency" => writer_concurrency().await,
        _ => Err("usage: argus-bench writer-concurrency".to_string()),
    };
    if let Err(err) = result {
        eprintln!("argus-bench: {err}");
        std::process::exit(2);
    }
}

fn event_items(tenant: &str, count: usize) -> Vec<Write> {
    let session = argus_models::ids::new_id();
    let now = argus_models::time::format(&argus_models::time::now());
    (0..count)
        .map(|i| {
            let payload = json!({"session_id": session, "category": "bench", "name": format!("e{i}"), "data": {"i": i, "pad": "x".repeat(64)}, "timestamp": "2021-06-15T00:00:00Z"});
            let input = EventInput::parse(&payload).expect("valid bench event");
            let id = argus_models::ids::new_id();
            Write::Put(argus_core::events::event_item(tenant, &id, &input, &now, &now).expect("item"))
        })
        .collect()
}

/// Median, min, max of durations.
fn summary(mut runs: Vec<Duration>) -> (Duration, Duration, Duration) {
    runs.sort();
    (runs[runs.len() / 2], runs[0], runs[runs.len() - 1])
}

async fn writer_concurrency() -> Result<(), String> {
    let mut settings = StackSettings::from_env();
    settings.table = format!("argus-bench-{}", uuid::Uuid::new_v4().simple());
    settings.queue_prefix = settings.table.clone();
    let backend = connect_local(&settings);
    wait_for_emulators(&backend, Duration::from_secs(60)).await?;
    let (backend, _) = provision_backend(backend, &Template::load_repo()?, &settings).await?;
    println!("batch writer: {ITEMS} event items (table + 3 GSIs) to DynamoDB Local, median of {RUNS} runs");
    println!("{:>12} {:>10} {:>10} {:>10} {:>12}", "concurrency", "median", "min", "max", "items/s");
    let mut baseline = None;
    for concurrency in [1usize, 2, 4, 8, 16, 32] {
        let mut runs = Vec::new();
        for run in 0..RUNS {
            let writes = event_items(&format!("bench{concurrency}x{run}"), ITEMS);
            let config = BatchWriterConfig { concurrency, ..BatchWriterConfig::default() };
            let started = Instant::now();
            let (outcomes, _) = write_all(&backend.dynamodb, &backend.table, &writes, &config).await;
            runs.push(started.elapsed());
            if !outcomes.iter().all(|o| o.is_written()) {
                return Err("a write failed during the benchmark".into());
            }
        }
        let (median, min, max) = summary(runs);
        let rate = ITEMS as f64 / median.as_secs_f64();
        let speedup = baseline.map(|b: f64| rate / b).unwrap_or(1.0);
        baseline.get_or_insert(rate);
        println!(
            "{concurrency:>12} {median:>10.2?} {min:>10.2?} {max:>10.2?} {rate:>12.0}  ({speedup:.2}x concurrency 1)"
        );
    }
    Ok(())
}
