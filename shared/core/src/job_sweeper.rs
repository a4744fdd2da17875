//! The job sweeper: every job reaches `completed` or `completed_with_errors` in bounded time.
//!
//! A job completes when its last chunk is counted. A chunk whose message is lost (dead-lettered
//! after SQS's 5 receives, never queued, or not recorded at creation) would leave its job open
//! forever. Open jobs are listed in GSI1 (`OPENJOBS#<shard>`, sorted by creation time, removed
//! on completion); a scheduled function runs [`sweep`] every minute. A job still open
//! [`STALE_AFTER`] after creation has each uncounted chunk given up: its items are recorded 503
//! `RETRY_LATER` (with their ids, to resend) and the chunk is counted with the same conditional
//! marker the processor uses, so a chunk is counted once whoever gets there first. Then the job
//! completes, with every item accounted for.
//!
//! Timing: SQS moves a message to the DLQ after 5 receives 3 minutes apart (about 12 minutes);
//! the processor already records failures instead of failing on the 4th receive. Giving up
//! after 13 minutes and sweeping every minute completes every job within 15 minutes.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use uuid::Uuid;

use crate::bulk::{self, ItemResult};
use crate::ddb::{get_n, get_opt_s, key, s, Item};
use crate::deadline::WithinDeadline;
use crate::jobs::{chunk_sk, commit_chunk, complete_if_done, job_pk, OPEN_JOB_SHARDS};
use crate::keys::{GSI1, GSI1PK, GSI1SK};
use crate::{Backend, ServiceError};

/// A job still open this long after creation has its missing chunks given up.
pub const STALE_AFTER: Duration = Duration::from_secs(13 * 60);
/// Jobs looked at per shard and run (the schedule comes back a minute later for the rest).
const JOBS_PER_SHARD: i32 = 25;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub jobs_checked: usize,
    pub chunks_given_up: usize,
    pub items_given_up: usize,
    /// Jobs whose sweep failed this run (retried on the next).
    pub jobs_failed: usize,
}

/// Sweeps the jobs created before `stale_before` (RFC 3339, the format of `created_at`).
pub async fn sweep(backend: &Backend, stale_before: &str) -> Result<SweepReport, ServiceError> {
    let mut report = SweepReport::default();
    // Start at a different shard each run, so one shard's slow jobs cannot starve the others.
    let first = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
        / 60) as u32;
    for shard in (0..OPEN_JOB_SHARDS).map(|i| (first + i) % OPEN_JOB_SHARDS) {
        if crate::deadline::expired() {
            break;
        }
        let out = backend
            .dynamodb
            .query()
            .table_name(&backend.table)
            .index_name(GSI1)
            .key_condition_expression("#pk = :pk AND #sk < :before")
            .expression_attribute_names("#pk", GSI1PK)
            .expression_attribute_names("#sk", GSI1SK)
            .expression_attribute_values(":pk", s(format!("OPENJOBS#{shard:02}")))
            .expression_attribute_values(":before", s(stale_before))
            .limit(JOBS_PER_SHARD)
            .send()
            .within_deadline()
            .await?
            .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
        for listed in out.items.unwrap_or_default() {
            let (Some(tenant), Some(job_id)) =
                (get_opt_s(&listed, "tenant_id"), get_opt_s(&listed, "job_id").and_then(|id| Uuid::try_parse(id).ok()))
            else {
                continue;
            };
            report.jobs_checked += 1;
            // One job's failure (or running out of time) must not stop the others: the next
            // run comes back to it.
            match finish(backend, tenant, &job_id, stale_before).await {
                Ok((chunks, items)) => {
                    report.chunks_given_up += chunks;
                    report.items_given_up += items;
                }
                Err(err) => {
                    tracing::warn!(%tenant, %job_id, error = %err, "job not swept this time");
                    report.jobs_failed += 1;
                }
            }
        }
    }
    Ok(report)
}

/// Gives up every uncounted chunk of one job, then completes it.
async fn finish(
    backend: &Backend,
    tenant: &str,
    job_id: &Uuid,
    stale_before: &str,
) -> Result<(usize, usize), ServiceError> {
    let pk = job_pk(tenant, job_id);
    let Some(job) = crate::ddb::get_meta(&backend.dynamodb, &backend.table, pk.clone()).await? else {
        return Ok((0, 0));
    };
    // Still making progress (a chunk was counted recently, e.g. behind a long backlog): let the
    // processor finish it. Only a job idle since the cutoff is given up.
    if get_opt_s(&job, "updated_at").is_some_and(|updated| updated >= stale_before) {
        return Ok((0, 0));
    }
    let total = get_n(&job, "total") as usize;
    let starts: Vec<usize> = match job.get("chunk_starts") {
        Some(AttributeValue::L(list)) => {
            list.iter().filter_map(|v| v.as_n().ok().and_then(|n| n.parse().ok())).collect()
        }
        _ => Vec::new(),
    };
    let chunks_total = get_n(&job, "chunks_total") as usize;
    if starts.len() != chunks_total {
        return Err(ServiceError::Internal(format!("job {job_id} has no usable chunk layout")));
    }
    let markers: Vec<Item> = (0..chunks_total).map(|chunk| key(pk.clone(), &chunk_sk(chunk))).collect();
    let counted: std::collections::HashSet<String> =
        crate::ddb::batch_get(&backend.dynamodb, &backend.table, markers, None)
            .await?
            .iter()
            .filter_map(|item| get_opt_s(item, crate::keys::SK).map(str::to_string))
            .collect();
    let (mut chunks, mut items) = (0, 0);
    for (chunk, start) in starts.iter().enumerate() {
        if counted.contains(&chunk_sk(chunk)) {
            continue;
        }
        let end = starts.get(chunk + 1).copied().unwrap_or(total);
        let results: Vec<ItemResult> = (*start..end)
            .map(|index| {
                bulk::retry_later(
                    index,
                    "the chunk was not processed in time (its message was lost or dead-lettered); resend this item",
                )
            })
            .collect();
        tracing::warn!(%tenant, %job_id, chunk, items = results.len(), "giving up a stalled job chunk");
        if commit_chunk(backend, tenant, job_id, chunk, &results).await? {
            chunks += 1;
            items += results.len();
        }
    }
    // Also completes a job whose counters were final but whose completion write was lost.
    complete_if_done(backend, &pk).await?;
    Ok((chunks, items))
}
