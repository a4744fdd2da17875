//! `make dev`'s target, measured: single `POST /events` offered at a steady rate (open loop:
//! each request leaves at its scheduled time, however slow earlier ones are), then how fast the
//! API accepted them and how long each took from accepted (`received_at`) to stored
//! (`created_at`, written by the processor).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{events, ms, Bench};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Which ingestion route the events take: the_eye's `POST /events`, or DataStream Pro's
/// `POST /ingest/events` (the same events in DataStream's shape; each keeps its `session_id`, an
/// optional field there, so the bench counts them stored the same way).
#[derive(Debug, Clone, Copy)]
pub enum Route {
    Events,
    IngestEvents,
}

impl Route {
    fn path(self) -> &'static str {
        match self {
            Route::Events => "/events",
            Route::IngestEvents => "/ingest/events",
        }
    }

    fn body(self, event: Value) -> Value {
        match self {
            Route::Events => event,
            Route::IngestEvents => json!({
                "stream_id": "bench", "event_type": event["name"], "timestamp": event["timestamp"],
                "data": event["data"], "session_id": event["session_id"], "category": event["category"],
            }),
        }
    }
}

pub async fn run(bench: &Bench, rate: usize, seconds: usize, route: Route) -> Result<Value, String> {
    let (tenant, key, session) = bench.tenant("sustained").await?;
    let total = rate * seconds;
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut sends = Vec::with_capacity(total);
    for item in events(&session, total) {
        ticker.tick().await;
        let (http, url, key) = (bench.http.clone(), format!("{}{}", bench.api_url, route.path()), key.clone());
        let item = route.body(item);
        sends.push(tokio::spawn(async move {
            let sent = Instant::now();
            let status = http
                .post(url)
                .header("x-api-key", key)
                .header("content-type", "application/json")
                .body(item.to_string())
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            (status, sent.elapsed())
        }));
    }
    let mut accepted = 0usize;
    let mut answer_ms = Vec::with_capacity(total);
    for send in sends {
        let (status, took) = send.await.map_err(|e| e.to_string())?;
        accepted += usize::from(status == 202);
        answer_ms.push(ms(took));
    }
    let all_answered = started.elapsed();
    bench.wait_stored(&tenant, &session, accepted, Duration::from_secs(300)).await?;
    let all_stored = started.elapsed();

    let filter =
        argus_core::events::EventFilter { session: uuid::Uuid::parse_str(&session).ok(), ..Default::default() };
    let mut lags = Vec::with_capacity(accepted);
    let mut cursor: Option<String> = None;
    loop {
        let page = argus_core::events::list(&bench.plain, &tenant, &filter, 1000, cursor.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        for event in &page.items {
            let received = argus_models::time::parse("received_at", &event.received_at).map_err(|e| e.message)?;
            let created = argus_models::time::parse("created_at", &event.created_at).map_err(|e| e.message)?;
            lags.push((created - received).num_milliseconds() as f64);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    lags.sort_by(f64::total_cmp);
    answer_ms.sort_by(f64::total_cmp);
    let result = json!({
        "route": route.path(),
        "offered_per_s": rate, "seconds": seconds, "sent": total, "accepted": accepted,
        "accepted_per_s": (accepted as f64 / all_answered.as_secs_f64()).round(),
        "answer_ms": {"p50": percentile(&answer_ms, 0.5), "p95": percentile(&answer_ms, 0.95), "max": percentile(&answer_ms, 1.0)},
        "stored_lag_ms": {"p50": percentile(&lags, 0.5), "p95": percentile(&lags, 0.95), "max": percentile(&lags, 1.0)},
        "all_stored_after_s": (all_stored.as_secs_f64() * 10.0).round() / 10.0,
        "drain_pollers": argus_local::drain::pollers(),
    });
    println!(
        "  {}: offered {rate}/s for {seconds} s: {accepted}/{total} accepted ({}/s), answer p50 {} ms p95 {} ms; accepted → stored p50 {} ms, p95 {} ms, max {} ms; all stored {} s after the first send",
        route.path(), result["accepted_per_s"], result["answer_ms"]["p50"], result["answer_ms"]["p95"],
        result["stored_lag_ms"]["p50"], result["stored_lag_ms"]["p95"], result["stored_lag_ms"]["max"], result["all_stored_after_s"]
    );
    Ok(result)
}
