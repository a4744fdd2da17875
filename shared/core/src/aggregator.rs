//! The aggregator: applies the table's change stream (DynamoDB Streams, new and old images) to
//! the rollup cells and the streams' arrival statistics.
//!
//! Exactly once: each change record is applied in one `TransactWriteItems` together with a
//! marker item named by the record's `eventID` (created only if absent, expiring after two
//! days, longer than a stream keeps records). A redelivered record, whether Lambda retries the
//! batch, a batch arrives twice or two invocations race, finds its marker and adds nothing.
//! The deltas are sums, so the order records are applied in does not matter.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use argus_models::rollup::{self, Cell, EventFacts, LAG_BUCKETS};
use argus_models::time;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use serde_json::Value;

use crate::batch_writer::{backoff, BatchWriterConfig};
use crate::ddb::{get_opt_s, key, s, Item};
use crate::deadline::WithinDeadline;
use crate::keys::*;
use crate::{Backend, ServiceError};

/// DynamoDB's limit of actions per transaction.
const MAX_TRANSACTION_ACTIONS: usize = 100;
/// How long a record's "applied" marker is kept: longer than DynamoDB Streams keeps a record (24 h).
const MARKER_TTL_SECONDS: i64 = 2 * 86_400;
/// How long the per-minute arrival statistics are kept (status reads the last hour).
const STATS_TTL_SECONDS: i64 = 2 * 86_400;
/// Attempts per transaction on conflicts and throttling (each with full-jitter backoff).
const MAX_ATTEMPTS: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

/// One record of a DynamoDB Streams event as Lambda delivers it.
#[derive(Clone, Debug)]
pub struct ChangeRecord {
    pub event_id: String,
    pub sequence_number: String,
    pub kind: ChangeKind,
    pub old: Option<Item>,
    pub new: Option<Item>,
    /// Deleted by DynamoDB's TTL (not by Argus).
    pub by_ttl: bool,
}

/// The records of a Lambda DynamoDB Streams event. A record that cannot be read at all is
/// returned as `Err(sequence number)`: it will be reported as a failure, never skipped.
pub fn parse_event(event: &Value) -> Vec<Result<ChangeRecord, String>> {
    event["Records"].as_array().into_iter().flatten().map(parse_record).collect()
}

fn parse_record(record: &Value) -> Result<ChangeRecord, String> {
    let change = &record["dynamodb"];
    let sequence_number = change["SequenceNumber"].as_str().unwrap_or_default().to_string();
    let kind = match record["eventName"].as_str() {
        Some("INSERT") => ChangeKind::Insert,
        Some("MODIFY") => ChangeKind::Modify,
        Some("REMOVE") => ChangeKind::Remove,
        _ => return Err(sequence_number),
    };
    let event_id = match record["eventID"].as_str() {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => return Err(sequence_number),
    };
    let identity = &record["userIdentity"];
    Ok(ChangeRecord {
        event_id,
        kind,
        old: change.get("OldImage").map(image),
        new: change.get("NewImage").map(image),
        by_ttl: identity["type"] == "Service" && identity["principalId"] == "dynamodb.amazonaws.com",
        sequence_number,
    })
}

/// An image in DynamoDB's JSON; the aggregator reads only string and number attributes.
fn image(value: &Value) -> Item {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, typed)| {
            let value = if let Some(text) = typed["S"].as_str() {
                AttributeValue::S(text.to_string())
            } else if let Some(number) = typed["N"].as_str() {
                AttributeValue::N(number.to_string())
            } else {
                return None;
            };
            Some((name.clone(), value))
        })
        .collect()
}

/// The tenant of an entity's item key `T#<tenant>#<KIND>#<id>`.
pub fn tenant_of(item: &Item, kind: &str) -> Option<String> {
    let pk = get_opt_s(item, PK)?;
    let rest = pk.strip_prefix("T#")?;
    let (tenant, tail) = rest.split_once('#')?;
    tail.starts_with(kind).then(|| tenant.to_string())
}

fn epoch_of(item: &Item, name: &str) -> Option<i64> {
    Some(time::parse(name, get_opt_s(item, name)?).ok()?.timestamp())
}

fn millis_of(item: &Item, name: &str) -> Option<i64> {
    Some(time::parse(name, get_opt_s(item, name)?).ok()?.timestamp_millis())
}

/// The rollup facts of an event item (`None`: not an event item).
pub fn event_facts(item: &Item) -> Option<EventFacts> {
    if get_opt_s(item, "entity") != Some("event") || get_opt_s(item, SK) != Some(META) {
        return None;
    }
    // Stored before rollups existed (no stream time index yet): never counted, so neither is
    // its removal; a later change stores it with the index and counts it from then on.
    if !item.contains_key(GSI4PK) {
        return None;
    }
    let timestamp = epoch_of(item, "timestamp")?;
    let expires_at = match item.get(EXPIRES_AT) {
        Some(AttributeValue::N(n)) => n.parse::<i64>().ok(),
        _ => None,
    };
    Some(EventFacts {
        tenant: tenant_of(item, "EVENT#")?,
        stream: get_opt_s(item, "stream")?.to_string(),
        event_type: get_opt_s(item, "name")?.to_string(),
        category: get_opt_s(item, "category").map(str::to_string),
        timestamp,
        retention_days: rollup::retention_of(timestamp, expires_at),
        deleted: item.contains_key("deleted_at"),
    })
}

/// Additions to one item: `ADD` counters (wide: sums of millionths), and the `expires_at` it keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Additions {
    counters: BTreeMap<String, i128>,
    expires_at: Option<i64>,
}

type Changes = BTreeMap<(String, String), Additions>;

fn add(changes: &mut Changes, pk: String, sk: String, counter: &str, delta: i128, expires_at: Option<i64>) {
    let entry = changes.entry((pk, sk)).or_default();
    *entry.counters.entry(counter.to_string()).or_insert(0) += delta;
    if expires_at.is_some() {
        entry.expires_at = expires_at.max(entry.expires_at);
    }
}

/// A bound kept on a stream's `TOTAL` item outside the transactions, by a conditional `SET`
/// that only moves it outward (so any order of deliveries ends at the same value): the latest
/// arrival, and the earliest and latest event timestamp ever stored (readers clamp windows to
/// them, so a long window reads only the cells where events can be).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Bound {
    LastReceived,
    EarliestTimestamp,
    LatestTimestamp,
}

impl Bound {
    fn attribute(self) -> &'static str {
        match self {
            Bound::LastReceived => "last_received_at",
            Bound::EarliestTimestamp => "earliest_timestamp",
            Bound::LatestTimestamp => "latest_timestamp",
        }
    }

    fn is_minimum(self) -> bool {
        self == Bound::EarliestTimestamp
    }
}

type Bounds = BTreeMap<(String, String, Bound), String>;

fn widen(bounds: &mut Bounds, tenant: &str, stream: &str, bound: Bound, value: &str) {
    let entry = bounds.entry((tenant.to_string(), stream.to_string(), bound)).or_insert_with(|| value.to_string());
    let outward = if bound.is_minimum() { value < entry.as_str() } else { value > entry.as_str() };
    if outward {
        *entry = value.to_string();
    }
}

/// The streams a change record counts in (tenant, stream): its event's old and new, or the
/// stream its error record names.
fn record_streams(record: &ChangeRecord) -> Vec<(String, String)> {
    let mut streams = Vec::new();
    for item in [&record.old, &record.new].into_iter().flatten() {
        if let Some(facts) = event_facts(item) {
            streams.push((facts.tenant, facts.stream));
        } else if get_opt_s(item, "entity") == Some("error") {
            if let Some(tenant) = tenant_of(item, "ERROR#") {
                streams.push((tenant, get_opt_s(item, "stream").unwrap_or("default").to_string()));
            }
        }
    }
    streams
}

/// The streams a batch counts in: their settings (cached, as writers read them), and the
/// counter sub-partition this batch writes (`crate::stream_stats`), picked by `salt`.
#[derive(Debug, Default)]
struct BatchStreams {
    settings: HashMap<(String, String), crate::streams::WriteSetting>,
    salt: u64,
}

impl BatchStreams {
    fn setting(&self, tenant: &str, stream: &str) -> Option<&crate::streams::WriteSetting> {
        self.settings.get(&(tenant.to_string(), stream.to_string()))
    }

    /// One sub-partition per batch and stream: concurrent batches spread over them, and one
    /// batch's transactions still pack into few items.
    fn sub(&self, tenant: &str, stream: &str) -> u32 {
        let count = self.setting(tenant, stream).map_or(1, |s| argus_models::stream::rollup_shards(s.write_shards));
        (self.salt % u64::from(count.max(1))) as u32
    }

    fn summed(&self, tenant: &str, stream: &str) -> &[argus_models::stream::RollupField] {
        self.setting(tenant, stream).map_or(&[], |s| s.rollup_fields.as_slice())
    }
}

/// The cell key of `cell` in the sub-partition this batch writes.
fn cell_key(cell: &Cell, streams: &BatchStreams) -> (String, String) {
    let Cell { tenant, stream, level, bucket, retention_days, dim } = cell;
    (
        stream_sub_pk(&rollup_pk(tenant, stream, *level, dim.kind(), *bucket), streams.sub(tenant, stream)),
        rollup_sk(*level, *bucket, *retention_days, dim.value()),
    )
}

/// What one change record does: counter changes, and the bounds it widens.
fn record_changes(record: &ChangeRecord, bounds: &mut Bounds, streams: &BatchStreams) -> Changes {
    let sub = |tenant: &str, stream: &str| streams.sub(tenant, stream);
    let mut changes = Changes::new();
    // TTL deletes an event that every read already hides: its cells are expired, not changed.
    let old = if record.by_ttl { None } else { record.old.as_ref().and_then(event_facts) };
    let new = record.new.as_ref().and_then(event_facts);
    for (cell, delta) in rollup::cell_deltas(old.as_ref(), new.as_ref()) {
        let (pk, sk) = cell_key(&cell, streams);
        add(&mut changes, pk, sk, "n", i128::from(delta), cell.expires_at());
    }
    // The summed fields: the old version's values leave its cells, the new one's enter.
    let versions = [(old.as_ref(), record.old.as_ref(), -1), (new.as_ref(), record.new.as_ref(), 1)];
    for (facts, item, sign) in versions {
        let (Some(facts), Some(item)) = (facts.filter(|f| !f.deleted), item) else { continue };
        field_changes(&mut changes, facts, item, sign, streams);
    }
    if let (Some(facts), Some(timestamp)) = (&new, record.new.as_ref().and_then(|i| get_opt_s(i, "timestamp"))) {
        widen(bounds, &facts.tenant, &facts.stream, Bound::EarliestTimestamp, timestamp);
        widen(bounds, &facts.tenant, &facts.stream, Bound::LatestTimestamp, timestamp);
    }
    if record.kind == ChangeKind::Insert {
        if let Some(item) = &record.new {
            let stats = match get_opt_s(item, "entity") {
                Some("event") => new.as_ref().map(|f| (f.tenant.clone(), f.stream.clone(), "stored")),
                Some("error") => tenant_of(item, "ERROR#")
                    .map(|tenant| (tenant, get_opt_s(item, "stream").unwrap_or("default").to_string(), "errors")),
                _ => None,
            };
            if let (Some((tenant, stream, counter)), Some(created)) = (stats, epoch_of(item, "created_at")) {
                let pk = stream_sub_pk(&stream_stats_pk(&tenant, &stream), sub(&tenant, &stream));
                let minute = rollup::Level::Minute.bucket(created);
                let minute_sk = stream_stats_minute_sk(minute);
                let ttl = Some(minute + STATS_TTL_SECONDS);
                add(&mut changes, pk.clone(), minute_sk.clone(), counter, 1, ttl);
                add(&mut changes, pk.clone(), STATS_TOTAL.to_string(), counter, 1, None);
                if counter == "stored" {
                    if let (Some(received), Some(stored)) =
                        (millis_of(item, "received_at"), millis_of(item, "created_at"))
                    {
                        let bucket = rollup::lag_bucket(stored - received);
                        add(&mut changes, pk, minute_sk, &format!("lag_{bucket:02}"), 1, ttl);
                    }
                    if let Some(received_at) = get_opt_s(item, "received_at") {
                        widen(bounds, &tenant, &stream, Bound::LastReceived, received_at);
                    }
                }
            }
        }
    }
    changes.retain(|_, a| {
        a.counters.retain(|_, d| *d != 0);
        !a.counters.is_empty()
    });
    changes
}

/// The summed fields an event version was stamped with by its writer (`events::SUMMED_FIELDS`).
fn stamped_fields(item: &Item) -> usize {
    usize::try_from(crate::ddb::get_n(item, crate::events::SUMMED_FIELDS)).unwrap_or(0)
}

/// Adds (`sign` 1) or removes (-1) one stored version's values of the summed fields it was
/// stamped with to its six cells: the same fields for the version's insert and its later
/// removal, whichever instance applies them. A value that cannot be summed exactly adds
/// nothing, so its cells' `k` stays below `n` and readers fold raw events there.
fn field_changes(changes: &mut Changes, facts: &EventFacts, item: &Item, sign: i128, streams: &BatchStreams) {
    let stamped = stamped_fields(item);
    if stamped == 0 {
        return;
    }
    // `stream_settings` made sure the settings know every stamped field.
    let summed = streams.summed(&facts.tenant, &facts.stream);
    let data: Option<Value> = get_opt_s(item, "data").and_then(|raw| serde_json::from_str(raw).ok());
    let cells = rollup::cells_of(facts);
    for (i, field) in summed.iter().enumerate().take(stamped) {
        let Some((present, millionths)) = rollup::field_contribution(data.as_ref(), &field.path()) else { continue };
        let [versions, values, sum] = rollup::field_counters(i);
        for cell in &cells {
            let (pk, sk) = cell_key(cell, streams);
            add(changes, pk.clone(), sk.clone(), &versions, sign, cell.expires_at());
            if present {
                add(changes, pk.clone(), sk.clone(), &values, sign, cell.expires_at());
                add(changes, pk, sk, &sum, sign * millionths, cell.expires_at());
            }
        }
    }
}

/// What the aggregator did with a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Records applied by this call.
    pub applied: usize,
    /// Records found already applied (redeliveries).
    pub duplicates: usize,
    /// Records with nothing to count (other entities, unchanged cells).
    pub unchanged: usize,
    /// The sequence number Lambda must retry from (`batchItemFailures`), if any.
    pub retry_from: Option<String>,
    pub transactions: usize,
}

struct Pending {
    record_index: usize,
    marker: String,
    changes: Changes,
}

/// Applies a batch of change records. Records are packed into transactions of at most 100
/// actions (a marker per record plus the summed changes); a transaction that cannot be written
/// after bounded retries, or is not started before the deadline, makes its first record the
/// point Lambda retries from (`ReportBatchItemFailures`), and later ones are not attempted.
pub async fn apply(backend: &Backend, records: &[Result<ChangeRecord, String>]) -> Applied {
    let mut result = Applied::default();
    let first = records.first().and_then(|r| r.as_ref().ok()).map(|r| r.sequence_number.clone());
    let settings = match stream_settings(backend, records).await {
        Ok(settings) => settings,
        Err(err) => {
            tracing::warn!(error = %err, "stream settings not read; Lambda retries the batch");
            result.retry_from = first.or_else(|| records.iter().find_map(|r| r.as_ref().err().cloned()));
            return result;
        }
    };
    // The batch's first record picks each stream's sub-partition.
    let salt = records.iter().find_map(|r| r.as_ref().ok()).map_or(0, |r| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        r.event_id.hash(&mut hasher);
        hasher.finish()
    });
    let streams = BatchStreams { settings, salt };
    let mut bounds = Bounds::new();
    let mut pending = Vec::new();
    for (index, record) in records.iter().enumerate() {
        let record = match record {
            Ok(record) => record,
            Err(sequence) => {
                tracing::error!(sequence = %sequence, "unreadable change record");
                result.retry_from = Some(sequence.clone());
                break;
            }
        };
        let changes = record_changes(record, &mut bounds, &streams);
        if changes.is_empty() {
            result.unchanged += 1;
            continue;
        }
        pending.push(Pending { record_index: index, marker: record.event_id.clone(), changes });
    }
    // Bounds first: a reader that clamps a window to them never misses a counted event.
    for ((tenant, stream, bound), value) in &bounds {
        let pk = stream_sub_pk(&stream_stats_pk(tenant, stream), streams.sub(tenant, stream));
        if let Err(err) = widen_stored(backend, &pk, *bound, value).await {
            tracing::warn!(error = %err, "stream bounds not recorded; Lambda retries the batch");
            result.retry_from = first.or(result.retry_from);
            return result;
        }
    }
    let mut start = 0;
    while start < pending.len() {
        // Pack records while marker + distinct items fit in one transaction.
        let mut merged = Changes::new();
        let mut end = start;
        while end < pending.len() {
            let extra = pending[end].changes.keys().filter(|k| !merged.contains_key(*k)).count();
            if end > start && (end - start) + 1 + merged.len() + extra > MAX_TRANSACTION_ACTIONS {
                break;
            }
            for (k, a) in &pending[end].changes {
                let entry = merged.entry(k.clone()).or_default();
                for (counter, delta) in &a.counters {
                    *entry.counters.entry(counter.clone()).or_insert(0) += delta;
                }
                entry.expires_at = entry.expires_at.max(a.expires_at);
            }
            end += 1;
        }
        match apply_group(backend, &pending[start..end]).await {
            Ok((applied, duplicates)) => {
                result.applied += applied;
                result.duplicates += duplicates;
                result.transactions += 1;
            }
            Err(err) => {
                tracing::warn!(error = %err, "rollup transaction not applied; Lambda retries from its first record");
                let index = pending[start].record_index;
                let sequence = records[index].as_ref().map(|r| r.sequence_number.clone()).unwrap_or_default();
                // Earlier in the batch than an unreadable record that stopped the packing.
                result.retry_from = Some(sequence);
                return result;
            }
        }
        start = end;
    }
    result
}

/// The settings of every stream the batch counts in (cached, as writers read them; nothing is
/// created for a stream without settings: it has the defaults).
async fn stream_settings(
    backend: &Backend,
    records: &[Result<ChangeRecord, String>],
) -> Result<HashMap<(String, String), crate::streams::WriteSetting>, ServiceError> {
    let mut by_tenant: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for record in records.iter().flatten() {
        for (tenant, stream) in record_streams(record) {
            by_tenant.entry(tenant).or_default().insert(stream);
        }
    }
    // The most summed fields each stream's versions in the batch were stamped with.
    let mut stamped: HashMap<(String, String), usize> = HashMap::new();
    for record in records.iter().flatten() {
        for item in [&record.old, &record.new].into_iter().flatten() {
            if let Some(facts) = event_facts(item) {
                let most = stamped.entry((facts.tenant, facts.stream)).or_default();
                *most = (*most).max(stamped_fields(item));
            }
        }
    }
    let stamped = &stamped;
    // Tenants read concurrently (each one BatchGetItem, or none when cached).
    let reads = by_tenant.into_iter().map(|(tenant, streams)| async move {
        let names: Vec<&str> = streams.iter().map(String::as_str).collect();
        let short = |settings: &crate::streams::WriteSettings| {
            names.iter().any(|stream| {
                let most = stamped.get(&(tenant.clone(), stream.to_string())).copied().unwrap_or(0);
                settings.summed_fields(stream) < most
            })
        };
        let mut settings = crate::streams::write_settings_of(backend, &tenant, &names, false).await?;
        if short(&settings) {
            // A writer knew a field this instance's cache does not yet: read the settings.
            crate::streams::forget(backend, &tenant, &names);
            settings = crate::streams::write_settings_of(backend, &tenant, &names, false).await?;
            if short(&settings) {
                // The list only grows, so this is a damaged stream item: retried, never guessed.
                return Err(ServiceError::Internal(format!(
                    "an event of tenant {tenant} was stamped with more summed fields than its stream has"
                )));
            }
        }
        Ok::<_, ServiceError>(
            streams.iter().map(|stream| ((tenant.clone(), stream.clone()), settings.of(stream))).collect::<Vec<_>>(),
        )
    });
    Ok(futures::future::try_join_all(reads).await?.into_iter().flatten().collect())
}

/// What the notifier must look at after a batch (webhooks), for tenants with a webhook that
/// listens (a per-instance cache, refreshed each minute; when it cannot be read, every check
/// is sent and the notifier decides):
/// - each stream with error records inserted gets one `errors_check`
///   (`stream.processing_error`), sent for redelivered records too (the check is idempotent);
/// - each (stream, arrival minute) with arrivals gets one `thresholds_check`, delayed until
///   the minute has ended, and again (undelayed, at most every 10 s) for arrivals counted
///   after that.
pub async fn queue_notifier_checks(
    backend: &Backend,
    records: &[Result<ChangeRecord, String>],
) -> Result<(), ServiceError> {
    use crate::webhooks::outbox::NotifierMessage;
    use argus_models::webhook::EventType;
    let mut errors: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut minutes: BTreeMap<(String, String), std::collections::BTreeSet<i64>> = BTreeMap::new();
    for record in records.iter().flatten() {
        let Some(item) = record.new.as_ref().filter(|_| record.kind == ChangeKind::Insert) else { continue };
        let arrival = match get_opt_s(item, "entity") {
            Some("error") => tenant_of(item, "ERROR#").map(|tenant| {
                let stream = get_opt_s(item, "stream").unwrap_or("default").to_string();
                *errors.entry((tenant.clone(), stream.clone())).or_insert(0) += 1;
                (tenant, stream)
            }),
            Some("event") => event_facts(item).map(|f| (f.tenant, f.stream)),
            _ => None,
        };
        if let (Some(key), Some(created)) = (arrival, epoch_of(item, "created_at")) {
            minutes.entry(key).or_default().insert(rollup::Level::Minute.bucket(created));
        }
    }
    let mut messages: Vec<(NotifierMessage, u64)> = Vec::new();
    for (tenant, stream) in errors.into_keys() {
        if watchers::watched(backend, &tenant, &stream, EventType::ProcessingError).await {
            messages.push((NotifierMessage::ErrorsCheck { tenant, stream }, 0));
        }
    }
    let now = argus_models::time::now().timestamp();
    let mut marks = Vec::new();
    for ((tenant, stream), minutes) in minutes {
        if !watchers::watched(backend, &tenant, &stream, EventType::ThresholdExceeded).await {
            continue;
        }
        for minute in minutes {
            let due = minute + rollup::Level::Minute.seconds() + crate::webhooks::thresholds::SETTLE_SECONDS;
            // Before the check is due: one delayed check. After: one more per 10 s, at once.
            let round = if now < due { 0 } else { 1 + now / 10 };
            let mark = (minute, round, tenant.clone(), stream.clone());
            if watchers::queued(&mark) {
                continue;
            }
            let delay = (due - now).max(0) as u64;
            messages.push((
                NotifierMessage::ThresholdsCheck { tenant: tenant.clone(), stream: stream.clone(), minute },
                delay,
            ));
            marks.push(mark);
        }
    }
    crate::webhooks::outbox::send(backend, &messages).await?;
    // Only once sent: a batch retried after a failed send queues them again.
    watchers::mark(marks);
    Ok(())
}

/// Which streams have webhooks listening, cached per instance for a minute (a new webhook is
/// heard from within a minute), and which threshold checks this instance already queued.
mod watchers {
    use std::collections::{BTreeSet, HashMap};
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    use argus_models::webhook::EventType;

    use crate::Backend;

    const FRESH: Duration = Duration::from_secs(60);
    /// Tenants cached at most (a bound on memory; the oldest are dropped first).
    const MAX_TENANTS: usize = 10_000;

    /// Per tenant: when read, and (event type, stream scope) of each enabled webhook.
    type Listening = Vec<(EventType, Option<String>)>;
    static CACHE: Mutex<Option<HashMap<String, (Instant, Listening)>>> = Mutex::new(None);
    static QUEUED: Mutex<BTreeSet<(i64, i64, String, String)>> = Mutex::new(BTreeSet::new());

    /// Whether a webhook of `tenant` listens to `event` on `stream`. True when the webhooks
    /// cannot be read: a needless check costs one message; a missed one, a notification.
    pub async fn watched(backend: &Backend, tenant: &str, stream: &str, event: EventType) -> bool {
        let cached = CACHE
            .lock()
            .ok()
            .and_then(|map| map.as_ref()?.get(tenant).filter(|(at, _)| at.elapsed() < FRESH).map(|(_, l)| l.clone()));
        let listening = match cached {
            Some(listening) => listening,
            None => match crate::webhooks::store::list(backend, tenant).await {
                Ok(webhooks) => {
                    let listening: Listening = webhooks
                        .into_iter()
                        .filter(|w| w.enabled)
                        .flat_map(|w| {
                            // Thresholds are checked only where some are set.
                            let thresholds_set = !w.thresholds.is_empty();
                            let scope = w.stream_id.clone();
                            w.events
                                .into_iter()
                                .filter(move |e| *e != EventType::ThresholdExceeded || thresholds_set)
                                .map(move |e| (e, scope.clone()))
                        })
                        .collect();
                    if let Ok(mut map) = CACHE.lock() {
                        let map = map.get_or_insert_with(HashMap::new);
                        if map.len() >= MAX_TENANTS {
                            map.retain(|_, (at, _)| at.elapsed() < FRESH);
                        }
                        if map.len() < MAX_TENANTS {
                            map.insert(tenant.to_string(), (Instant::now(), listening.clone()));
                        }
                    }
                    listening
                }
                Err(err) => {
                    tracing::warn!(error = %err, tenant, "webhooks not readable; queueing the check anyway");
                    return true;
                }
            },
        };
        listening.iter().any(|(e, scope)| *e == event && scope.as_deref().is_none_or(|s| s == stream))
    }

    pub fn queued(mark: &(i64, i64, String, String)) -> bool {
        QUEUED.lock().map(|q| q.contains(mark)).unwrap_or(false)
    }

    /// Remembers sent checks; forgets minutes over ten minutes old.
    pub fn mark(marks: Vec<(i64, i64, String, String)>) {
        let Ok(mut queued) = QUEUED.lock() else { return };
        for mark in marks {
            let horizon = mark.0 - 600;
            while queued.first().is_some_and(|(m, _, _, _)| *m < horizon) {
                queued.pop_first();
            }
            queued.insert(mark);
        }
    }
}

/// Writes one group of records (their markers and summed changes) in one transaction; records
/// whose marker exists are dropped and the rest retried. Returns (applied, duplicates).
async fn apply_group(backend: &Backend, group: &[Pending]) -> Result<(usize, usize), ServiceError> {
    let mut remaining: Vec<&Pending> = group.iter().collect();
    let mut duplicates = 0;
    let config = BatchWriterConfig::default();
    for attempt in 1..=MAX_ATTEMPTS {
        if remaining.is_empty() {
            return Ok((0, duplicates));
        }
        let items = transaction(backend, &remaining)?;
        let sent =
            backend.dynamodb.transact_write_items().set_transact_items(Some(items)).send().within_deadline().await?;
        match sent {
            Ok(_) => return Ok((remaining.len(), duplicates)),
            Err(err) => {
                let cancelled = err.as_service_error().is_some_and(|e| e.is_transaction_canceled_exception());
                if !cancelled && !crate::error::is_transient_sdk_error(&err) {
                    return Err(ServiceError::from_sdk("dynamodb", err));
                }
                // Which of these records did another delivery apply meanwhile?
                let keys = remaining.iter().map(|p| key(applied_change_pk(&p.marker), META)).collect();
                let found = crate::ddb::batch_get(&backend.dynamodb, &backend.table, keys, Some("PK")).await?;
                let applied: BTreeSet<String> =
                    found.iter().filter_map(|item| get_opt_s(item, PK).map(str::to_string)).collect();
                let before = remaining.len();
                remaining.retain(|p| !applied.contains(&applied_change_pk(&p.marker)));
                duplicates += before - remaining.len();
                if before == remaining.len() {
                    // A conflict or throttle, not a duplicate: back off.
                    if !crate::deadline::sleep_within(backoff(&config, attempt)).await {
                        return Err(crate::deadline::out_of_time());
                    }
                }
            }
        }
    }
    Err(ServiceError::Unavailable {
        component: "dynamodb",
        message: "rollup transaction kept conflicting or being throttled".into(),
    })
}

fn transaction(backend: &Backend, records: &[&Pending]) -> Result<Vec<TransactWriteItem>, ServiceError> {
    let internal = |e: aws_sdk_dynamodb::error::BuildError| ServiceError::Internal(e.to_string());
    let now = chrono::Utc::now().timestamp();
    let mut merged = Changes::new();
    let mut items = Vec::new();
    for record in records {
        let mut marker = key(applied_change_pk(&record.marker), META);
        marker.insert(EXPIRES_AT.into(), AttributeValue::N((now + MARKER_TTL_SECONDS).to_string()));
        items.push(
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&backend.table)
                        .set_item(Some(marker))
                        .condition_expression("attribute_not_exists(PK)")
                        .build()
                        .map_err(internal)?,
                )
                .build(),
        );
        for (k, a) in &record.changes {
            let entry = merged.entry(k.clone()).or_default();
            for (counter, delta) in &a.counters {
                *entry.counters.entry(counter.clone()).or_insert(0) += delta;
            }
            entry.expires_at = entry.expires_at.max(a.expires_at);
        }
    }
    for ((pk, sk), additions) in merged {
        let mut update = Update::builder().table_name(&backend.table).key(PK, s(pk)).key(SK, s(sk));
        let mut adds = Vec::new();
        for (i, (counter, delta)) in additions.counters.iter().enumerate() {
            adds.push(format!("#c{i} :c{i}"));
            update = update
                .expression_attribute_names(format!("#c{i}"), counter)
                .expression_attribute_values(format!(":c{i}"), AttributeValue::N(delta.to_string()));
        }
        let mut expression = format!("ADD {}", adds.join(", "));
        if let Some(expires_at) = additions.expires_at {
            expression = format!("SET #expires = :expires {expression}");
            update = update
                .expression_attribute_names("#expires", EXPIRES_AT)
                .expression_attribute_values(":expires", AttributeValue::N(expires_at.to_string()));
        }
        items.push(
            TransactWriteItem::builder()
                .update(update.update_expression(expression).build().map_err(internal)?)
                .build(),
        );
    }
    Ok(items)
}

/// [`widen_stored_once`], retried with backoff on throttling and transaction conflicts (the
/// `TOTAL` item is hot: every batch of the stream widens it).
async fn widen_stored(backend: &Backend, stats_pk: &str, bound: Bound, value: &str) -> Result<(), ServiceError> {
    let config = BatchWriterConfig::default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match widen_stored_once(backend, stats_pk, bound, value).await {
            Err(ServiceError::Unavailable { .. }) if attempt < MAX_ATTEMPTS => {
                if !crate::deadline::sleep_within(backoff(&config, attempt)).await {
                    return Err(crate::deadline::out_of_time());
                }
            }
            other => return other,
        }
    }
}

async fn widen_stored_once(backend: &Backend, stats_pk: &str, bound: Bound, value: &str) -> Result<(), ServiceError> {
    let condition =
        if bound.is_minimum() { "attribute_not_exists(#b) OR #b > :v" } else { "attribute_not_exists(#b) OR #b < :v" };
    let sent = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .key(PK, s(stats_pk))
        .key(SK, s(STATS_TOTAL))
        .update_expression("SET #b = :v")
        .condition_expression(condition)
        .expression_attribute_names("#b", bound.attribute())
        .expression_attribute_values(":v", s(value))
        .send()
        .within_deadline()
        .await?;
    match sent {
        Ok(_) => Ok(()),
        Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => Ok(()),
        Err(err) => Err(ServiceError::from_sdk("dynamodb", err)),
    }
}

/// Reads the lag histogram counters of a stats minute item.
pub fn lag_histogram(item: &Item) -> [u64; LAG_BUCKETS] {
    let mut histogram = [0u64; LAG_BUCKETS];
    for (bucket, slot) in histogram.iter_mut().enumerate() {
        *slot = crate::ddb::get_n(item, &format!("lag_{bucket:02}"));
    }
    histogram
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event_image(deleted: bool) -> Value {
        let mut image = json!({
            "PK": {"S": "T#acme#EVENT#0190b5a0-0000-7000-8000-000000000001"},
            "SK": {"S": "#META"},
            "entity": {"S": "event"},
            "stream": {"S": "web"},
            "name": {"S": "click"},
            "category": {"S": "ui"},
            "timestamp": {"S": "2026-12-01T10:15:30.000Z"},
            "received_at": {"S": "2026-12-01T10:15:31.000Z"},
            "created_at": {"S": "2026-12-01T10:15:31.020Z"},
            "expires_at": {"N": "1772446560"},
            "GSI4PK": {"S": "T#acme#ST#web#03"},
            "data": {"S": "{}"},
            "tags": {"L": []}
        });
        if deleted {
            image["deleted_at"] = json!({"S": "2026-12-01T11:00:00.000Z"});
        }
        image
    }

    fn record(name: &str, old: Option<Value>, new: Option<Value>) -> ChangeRecord {
        let mut change = json!({"SequenceNumber": "100"});
        if let Some(old) = old {
            change["OldImage"] = old;
        }
        if let Some(new) = new {
            change["NewImage"] = new;
        }
        let event = json!({"Records": [{"eventID": "e1", "eventName": name, "dynamodb": change}]});
        parse_event(&event).remove(0).unwrap()
    }

    #[test]
    fn reads_lambda_records() {
        let facts = event_facts(&record("INSERT", None, Some(event_image(false))).new.unwrap()).unwrap();
        assert_eq!(facts.tenant, "acme");
        assert_eq!(facts.category.as_deref(), Some("ui"));
        let bad = json!({"Records": [{"eventName": "INSERT", "dynamodb": {"SequenceNumber": "7"}}, {}]});
        let parsed = parse_event(&bad);
        assert_eq!(parsed[0].as_ref().unwrap_err(), "7");
        assert!(parsed[1].is_err());
    }

    #[test]
    fn an_insert_counts_cells_and_arrival() {
        let mut bounds = Bounds::new();
        let changes =
            record_changes(&record("INSERT", None, Some(event_image(false))), &mut bounds, &BatchStreams::default());
        // 2 levels × 3 dimensions, plus the minute and total statistics.
        assert_eq!(changes.len(), 8);
        let minute = changes.iter().find(|((_, sk), _)| sk.starts_with("M#")).unwrap().1;
        assert_eq!(minute.counters["stored"], 1);
        assert_eq!(minute.counters[&format!("lag_{:02}", rollup::lag_bucket(20))], 1);
        let bound = |bounds: &Bounds, b| bounds[&("acme".to_string(), "web".to_string(), b)].clone();
        assert_eq!(bound(&bounds, Bound::LastReceived), "2026-12-01T10:15:31.000Z");
        assert_eq!(bound(&bounds, Bound::EarliestTimestamp), "2026-12-01T10:15:30.000Z");
        let mut later = event_image(false);
        later["timestamp"] = json!({"S": "2026-12-01T11:00:00.000Z"});
        record_changes(&record("MODIFY", Some(event_image(false)), Some(later)), &mut bounds, &BatchStreams::default());
        assert_eq!(bound(&bounds, Bound::EarliestTimestamp), "2026-12-01T10:15:30.000Z");
        assert_eq!(bound(&bounds, Bound::LatestTimestamp), "2026-12-01T11:00:00.000Z");
    }

    #[test]
    fn deletes_and_ttl_removals() {
        let mut bounds = Bounds::new();
        let delete = record("MODIFY", Some(event_image(false)), Some(event_image(true)));
        let changes = record_changes(&delete, &mut bounds, &BatchStreams::default());
        assert_eq!(changes.len(), 6);
        assert!(changes.values().all(|a| a.counters["n"] == -1));
        assert!(!bounds.keys().any(|(_, _, b)| *b == Bound::LastReceived));
        let mut expired = record("REMOVE", Some(event_image(false)), None);
        assert_eq!(record_changes(&expired, &mut bounds, &BatchStreams::default()).len(), 6);
        expired.by_ttl = true;
        assert!(record_changes(&expired, &mut bounds, &BatchStreams::default()).is_empty());
        let unrelated = record("INSERT", None, Some(json!({"PK": {"S": "AGG#x"}, "SK": {"S": "#META"}})));
        assert!(record_changes(&unrelated, &mut bounds, &BatchStreams::default()).is_empty());
        // An event stored before rollups (no GSI4 key) was never counted: its delete moves nothing,
        // and its first change after counts it once.
        let mut legacy = event_image(false);
        legacy.as_object_mut().unwrap().remove("GSI4PK");
        assert!(record_changes(
            &record("MODIFY", Some(legacy.clone()), Some(event_image(true))),
            &mut bounds,
            &BatchStreams::default()
        )
        .is_empty());
        let counted = record_changes(
            &record("MODIFY", Some(legacy), Some(event_image(false))),
            &mut bounds,
            &BatchStreams::default(),
        );
        assert_eq!(counted.len(), 6);
        assert!(counted.values().all(|a| a.counters["n"] == 1));
    }

    #[test]
    fn summed_fields_follow_the_fields_each_version_was_stamped_with() {
        let field = |name: &str| argus_models::stream::RollupField {
            field: name.into(),
            since: "2026-12-01T10:00:00.000Z".into(),
        };
        let setting = crate::streams::WriteSetting {
            rollup_fields: std::sync::Arc::new(vec![field("data.amount"), field("data.qty")]),
            ..crate::streams::WriteSetting::default()
        };
        let streams = BatchStreams { settings: HashMap::from([(("acme".into(), "web".into()), setting)]), salt: 0 };
        // A version whose writer knew the stream's first `stamped` summed fields.
        let version = |amount: Value, stamped: usize, deleted: bool| {
            let mut image = event_image(deleted);
            image["data"] = json!({"S": json!({"amount": amount, "qty": 3}).to_string()});
            if stamped > 0 {
                image["summed_fields"] = json!({"N": stamped.to_string()});
            }
            image
        };
        let mut bounds = Bounds::new();
        let mut apply = |old: Option<Value>, new: Option<Value>| {
            let kind = match (&old, &new) {
                (None, _) => "INSERT",
                (_, None) => "REMOVE",
                _ => "MODIFY",
            };
            let changes = record_changes(&record(kind, old, new), &mut bounds, &streams);
            changes.into_iter().filter(|((pk, _), _)| pk.contains("#RU#")).map(|(_, a)| a).collect::<Vec<_>>()
        };
        let inserted = apply(None, Some(version(json!(2.5), 1, false)));
        assert_eq!(inserted.len(), 6);
        for cell in &inserted {
            assert_eq!((cell.counters["k0"], cell.counters["c0"], cell.counters["s0"]), (1, 1, 2_500_000));
            assert!(!cell.counters.contains_key("k1"), "data.qty was not stamped");
        }
        // An update moves the value: the cells take the difference, nothing else.
        let old = version(json!(2.5), 1, false);
        let updated = apply(Some(old.clone()), Some(version(json!(4), 1, false)));
        assert_eq!(updated.len(), 6);
        assert!(updated.iter().all(|a| a.counters == BTreeMap::from([("s0".to_string(), 1_500_000)])));
        // A writer that knows both fields: the second is summed from this version on.
        let restamped = apply(Some(old.clone()), Some(version(json!(2.5), 2, false)));
        assert!(restamped.iter().all(|a| a.counters
            == BTreeMap::from([("k1".to_string(), 1), ("c1".to_string(), 1), ("s1".to_string(), 3_000_000)])));
        // A soft delete, and a plain removal, take the version's value out with its count.
        for gone in [apply(Some(old.clone()), Some(version(json!(2.5), 1, true))), apply(Some(old), None)] {
            assert!(gone.iter().all(|a| (a.counters["n"], a.counters["k0"], a.counters["s0"]) == (-1, -1, -2_500_000)));
        }
        // Stamped with no field (its writer knew none yet): counted, not summed.
        assert!(apply(None, Some(version(json!(1), 0, false)))
            .iter()
            .all(|a| a.counters["n"] == 1 && !a.counters.contains_key("k0")));
        // Not a number, or not whole millionths: counted, and the cell's k stays below its n.
        for value in [json!("ten"), json!(0.1234567)] {
            assert!(apply(None, Some(version(value, 1, false)))
                .iter()
                .all(|a| a.counters["n"] == 1 && !a.counters.contains_key("k0")));
        }
        // No value: a summable version with nothing to add.
        let mut bare = event_image(false);
        bare["summed_fields"] = json!({"N": "1"});
        assert!(apply(None, Some(bare)).iter().all(|a| a.counters["k0"] == 1 && !a.counters.contains_key("c0")));
    }
}
