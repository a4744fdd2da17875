//! Rate-limit counters (issue 14): one item per caller, shard and hour, charged with one
//! conditional `UpdateItem` (`ADD`, with the limit in the condition), so concurrent requests
//! can never admit more than the limit: there is no read-then-write to race.
//!
//! Cost: an admitted request is one write (1 WCU: the item is tiny). A refused one is one failed
//! conditional write the first time an instance sees the window full, then nothing: every
//! answer (admitted or refused) tells the instance how much of the window is spent, and counts
//! only grow within a window, so a request that cannot fit is refused from memory.

use std::collections::HashMap;
use std::sync::Mutex;

use argus_models::limits::{shard_part, shards_for, window_of, LimitKind, Limits, WINDOW_SECONDS};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

use crate::ddb::{get_n, s, Item};
use crate::deadline::WithinDeadline;
use crate::keys::{EXPIRES_AT, PK, SK};
use crate::{Backend, ServiceError};

/// What one request spends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Charge {
    pub requests: u64,
    pub events: u64,
}

impl Charge {
    pub fn is_empty(self) -> bool {
        self.requests == 0 && self.events == 0
    }
}

/// Where a caller stands after an admitted request (for the `RateLimit-*` headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub limits: Limits,
    pub requests_used: u64,
    pub events_used: u64,
    pub reset_seconds: u64,
}

impl Usage {
    pub fn requests_remaining(&self) -> u64 {
        self.limits.requests_per_hour.saturating_sub(self.requests_used)
    }

    pub fn events_remaining(&self) -> u64 {
        self.limits.events_per_hour.saturating_sub(self.events_used)
    }
}

/// Why a request was refused: the limit it would pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: LimitKind,
    pub limit: u64,
    /// What this request asked for of that limit.
    pub requested: u64,
    pub reset_seconds: u64,
    /// The counters as last seen (this shard's, scaled like `Usage`): what the headers report.
    pub requests_used: u64,
    pub events_used: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admitted(Usage),
    Refused(Refusal),
}

/// Per-instance memory of counters (a lower bound of each: counts only grow in a window).
#[derive(Default, Debug)]
pub struct CounterMemo {
    seen: Mutex<HashMap<(String, u64), (u64, u64)>>,
}

/// Counters remembered at most (older windows are dropped first).
const MEMO_ENTRIES: usize = 10_000;

impl CounterMemo {
    fn get(&self, pk: &str, window: u64) -> Option<(u64, u64)> {
        self.seen.lock().ok()?.get(&(pk.to_string(), window)).copied()
    }

    fn note(&self, pk: &str, window: u64, requests: u64, events: u64) {
        let Ok(mut seen) = self.seen.lock() else { return };
        if seen.len() >= MEMO_ENTRIES {
            seen.retain(|(_, w), _| *w >= window);
            if seen.len() >= MEMO_ENTRIES {
                seen.clear();
            }
        }
        let entry = seen.entry((pk.to_string(), window)).or_insert((0, 0));
        *entry = (entry.0.max(requests), entry.1.max(events));
    }
}

/// The counter item of `principal` (a key id, or a token subject's hash), shard `shard`.
pub fn counter_pk(tenant: &str, principal: &str, shard: u64) -> String {
    format!("T#{tenant}#RL#{principal}#{shard}")
}

pub fn window_sk(window: u64) -> String {
    format!("W#{window}")
}

/// The refusal `charge` meets on a counter at (`requests`, `events`) with limit `part`, if any.
fn refusal_at(part: Limits, used: (u64, u64), charge: Charge) -> Option<LimitKind> {
    let over = |limit: u64, used: u64, asked: u64| asked > 0 && limit != u64::MAX && used.saturating_add(asked) > limit;
    if over(part.requests_per_hour, used.0, charge.requests) {
        Some(LimitKind::Requests)
    } else if over(part.events_per_hour, used.1, charge.events) {
        Some(LimitKind::Events)
    } else {
        None
    }
}

/// Charges `charge` to `principal`'s counter for the current hour, or refuses it whole.
pub async fn charge(
    backend: &Backend,
    tenant: &str,
    principal: &str,
    limits: Limits,
    charge: Charge,
    now_epoch_seconds: u64,
) -> Result<Admission, ServiceError> {
    let (window, reset_seconds) = window_of(now_epoch_seconds);
    if limits.unlimited() {
        return Ok(Admission::Admitted(Usage { limits, requests_used: 0, events_used: 0, reset_seconds }));
    }
    let shards = shards_for(limits.requests_per_hour);
    let first = if shards > 1 { u64::from(random_u32()) % shards } else { 0 };
    let mut refused = LimitKind::Requests;
    let mut seen = (0u64, 0u64);
    for step in 0..shards {
        let shard = (first + step) % shards;
        let part = Limits {
            requests_per_hour: shard_part(limits.requests_per_hour, shards, shard),
            events_per_hour: shard_part(limits.events_per_hour, shards, shard),
        };
        let pk = counter_pk(tenant, principal, shard);
        let known = backend.rate_memo.get(&pk, window).unwrap_or((0, 0));
        if let Some(kind) = refusal_at(part, known, charge) {
            refused = kind;
            seen = known;
            continue;
        }
        match add_within(backend, &pk, window, part, charge).await? {
            Ok(counts) => {
                backend.rate_memo.note(&pk, window, counts.0, counts.1);
                // Sharded counters report this shard's share, scaled: an estimate, exact at one shard.
                let usage = Usage {
                    limits,
                    requests_used: counts.0.saturating_mul(shards).min(limits.requests_per_hour),
                    events_used: counts.1.saturating_mul(shards).min(limits.events_per_hour),
                    reset_seconds,
                };
                return Ok(Admission::Admitted(usage));
            }
            Err(counts) => {
                backend.rate_memo.note(&pk, window, counts.0, counts.1);
                refused = refusal_at(part, counts, charge).unwrap_or(LimitKind::Requests);
                seen = counts;
            }
        }
    }
    let (limit, requested) = match refused {
        LimitKind::Requests => (limits.requests_per_hour, charge.requests),
        LimitKind::Events => (limits.events_per_hour, charge.events),
    };
    Ok(Admission::Refused(Refusal {
        kind: refused,
        limit,
        requested,
        reset_seconds,
        requests_used: seen.0.saturating_mul(shards).min(limits.requests_per_hour),
        events_used: seen.1.saturating_mul(shards).min(limits.events_per_hour),
    }))
}

/// One conditional `ADD` on a counter: `Ok(counts after)` when it fitted, `Err(counts before)`
/// when the condition refused it.
async fn add_within(
    backend: &Backend,
    pk: &str,
    window: u64,
    part: Limits,
    charge: Charge,
) -> Result<Result<(u64, u64), (u64, u64)>, ServiceError> {
    let mut conditions = Vec::new();
    let mut request = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .key(PK, s(pk))
        .key(SK, s(window_sk(window)))
        .update_expression("ADD requests :r, events :e SET #exp = if_not_exists(#exp, :exp)")
        .expression_attribute_names("#exp", EXPIRES_AT)
        .expression_attribute_values(":r", n(charge.requests))
        .expression_attribute_values(":e", n(charge.events))
        // Kept one window past its end: long enough for late reads, then TTL removes it.
        .expression_attribute_values(":exp", n((window + 2) * WINDOW_SECONDS))
        .return_values(ReturnValue::UpdatedNew)
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
    if charge.requests > 0 && part.requests_per_hour != u64::MAX {
        conditions.push("(attribute_not_exists(requests) OR requests <= :rmax)");
        request = request.expression_attribute_values(":rmax", n(part.requests_per_hour - charge.requests));
    }
    if charge.events > 0 && part.events_per_hour != u64::MAX {
        conditions.push("(attribute_not_exists(events) OR events <= :emax)");
        request = request.expression_attribute_values(":emax", n(part.events_per_hour - charge.events));
    }
    if !conditions.is_empty() {
        request = request.condition_expression(conditions.join(" AND "));
    }
    match request.send().within_deadline().await? {
        Ok(out) => Ok(Ok(counts(out.attributes.as_ref()))),
        Err(err) => match err.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(failed)) => Ok(Err(counts(failed.item.as_ref()))),
            _ => Err(ServiceError::from_sdk("dynamodb", err)),
        },
    }
}

fn counts(item: Option<&Item>) -> (u64, u64) {
    item.map(|item| (get_n(item, "requests"), get_n(item, "events"))).unwrap_or((0, 0))
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    // Only spreads load over shards: a failure to get randomness just starts at shard 0.
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_limit_that_would_be_passed() {
        let part = Limits { requests_per_hour: 10, events_per_hour: 100 };
        assert_eq!(refusal_at(part, (9, 0), Charge { requests: 1, events: 0 }), None);
        assert_eq!(refusal_at(part, (10, 0), Charge { requests: 1, events: 0 }), Some(LimitKind::Requests));
        assert_eq!(refusal_at(part, (0, 95), Charge { requests: 1, events: 5 }), None);
        assert_eq!(refusal_at(part, (0, 95), Charge { requests: 1, events: 6 }), Some(LimitKind::Events));
        // A request that spends no events is not refused for the events quota.
        assert_eq!(refusal_at(part, (0, 100), Charge { requests: 1, events: 0 }), None);
        let unlimited_events = Limits { requests_per_hour: 10, events_per_hour: u64::MAX };
        assert_eq!(refusal_at(unlimited_events, (0, u64::MAX - 1), Charge { requests: 1, events: 5 }), None);
    }

    #[test]
    fn the_memo_keeps_the_highest_count_seen() {
        let memo = CounterMemo::default();
        memo.note("a", 1, 5, 10);
        memo.note("a", 1, 3, 12);
        assert_eq!(memo.get("a", 1), Some((5, 12)));
        assert_eq!(memo.get("a", 2), None);
    }
}
