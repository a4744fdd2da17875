//! The scheduled job sweeper's handler (`argus_core::job_sweeper`).

use std::time::{Duration, Instant};

use argus_core::job_sweeper::{self, STALE_AFTER};
use argus_core::Backend;
use serde_json::Value;

/// Kept before the Lambda deadline to answer.
const DEADLINE_RESERVE: Duration = Duration::from_secs(2);

/// Sweeps jobs open longer than `STALE_AFTER`. An operator invoking it by hand may pass
/// `{"stale_after_seconds": N}` to finish jobs sooner (a chunk is still counted only once,
/// whether the processor or the sweeper gets there first).
pub async fn handle(backend: &Backend, event: &Value, deadline: Option<Instant>) -> Result<Value, String> {
    let stale_after =
        event.get("stale_after_seconds").and_then(Value::as_u64).map(Duration::from_secs).unwrap_or(STALE_AFTER);
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(stale_after).unwrap_or_default();
    let stale_before = argus_models::time::format(&cutoff);
    let work_deadline = deadline.map(|d| d.checked_sub(DEADLINE_RESERVE).unwrap_or(d));
    let report = argus_core::deadline::scope(work_deadline, job_sweeper::sweep(backend, &stale_before))
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(?report, "job sweep");
    serde_json::to_value(report).map_err(|e| e.to_string())
}
