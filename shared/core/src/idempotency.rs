//! `Idempotency-Key`: the first request with a key stores its answer; the same key with the same
//! request within 24 h gets that answer again, and nothing runs twice.
//!
//! A request takes the key with a conditional put (state `in_progress`, locked for
//! `LOCK_SECONDS`, so a crashed holder's lock expires). When it finishes, its status and body
//! are stored (`completed`). Expiry is checked by timestamp: DynamoDB's TTL deletion lags by up
//! to days. Answers over one item's size are stored in parts.

use crate::deadline::WithinDeadline;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest, Sha256};

use crate::batch_writer::{write_all, BatchWriterConfig, Write};
use crate::ddb::{get_meta, get_n, get_opt_s, key, s, Item};
use crate::keyed_ids::IdSeed;
use crate::keys::{EXPIRES_AT, META, PK, SK};
use crate::{Backend, ServiceError};

pub const MAX_KEY_LEN: usize = 255;
pub const RETENTION_SECONDS: u64 = 24 * 60 * 60;
/// How long a request holds the key before another may take it over (longer than any
/// invocation: API Gateway gives up after 30 s).
pub const LOCK_SECONDS: u64 = 60;
/// Body bytes per stored part (items are limited to 400 KB).
const PART_BYTES: usize = 300 * 1024;

fn now_epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn now_epoch() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn record_pk(tenant: &str, idempotency_key: &str) -> String {
    format!("T#{tenant}#IDEM#{}", hex::encode(Sha256::digest(idempotency_key.as_bytes())))
}

/// What identifies "the same request": route and exact body.
pub fn fingerprint(route: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(route.as_bytes());
    hasher.update(b"\n");
    hasher.update(body);
    hex::encode(hasher.finalize())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

#[derive(Debug)]
pub enum Begin {
    /// This request holds the key: run it, then `complete` or `release`.
    Proceed(Held),
    /// The same request already finished: answer this.
    Replay(StoredResponse),
    /// The key was used for a different request.
    Reused,
    /// The first request with this key is still running.
    InProgress,
}

#[derive(Debug)]
pub struct Held {
    pk: String,
    /// What the ids this request creates derive from (`keyed_ids`).
    pub seed: IdSeed,
}

pub fn validate_key(raw: &str) -> Result<(), ServiceError> {
    // No comma: API Gateway joins two Idempotency-Key headers with one, and which key the client
    // meant cannot be told.
    if raw.is_empty() || raw.len() > MAX_KEY_LEN || !raw.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',') {
        return Err(ServiceError::bad_request(
            "INVALID_IDEMPOTENCY_KEY",
            format!("Idempotency-Key is one header of 1 to {MAX_KEY_LEN} visible ASCII characters, no comma"),
        ));
    }
    Ok(())
}

pub async fn begin(
    backend: &Backend,
    tenant: &str,
    idempotency_key: &str,
    fingerprint: &str,
) -> Result<Begin, ServiceError> {
    validate_key(idempotency_key)?;
    let pk = record_pk(tenant, idempotency_key);
    let key_hash = pk.rsplit('#').next().unwrap_or_default().to_string();
    let seed = |taken_ms: u64| IdSeed { tenant: tenant.to_string(), key_hash: key_hash.clone(), taken_ms };
    // Two rounds at most: a record that expired between our put and our read is retried once.
    for _ in 0..2 {
        let now = now_epoch();
        let now_ms = now_epoch_ms();
        // A new key (or one whose record expired): taken now, ids derived from now.
        let put = backend
            .dynamodb
            .put_item()
            .table_name(&backend.table)
            .item(PK, s(&pk))
            .item(SK, s(META))
            .item("state", s("in_progress"))
            .item("fingerprint", s(fingerprint))
            .item("taken_ms", AttributeValue::N(now_ms.to_string()))
            .item("locked_until", AttributeValue::N((now + LOCK_SECONDS).to_string()))
            .item(EXPIRES_AT, AttributeValue::N((now + RETENTION_SECONDS).to_string()))
            .condition_expression("attribute_not_exists(PK) OR #expires < :now")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .send()
            .within_deadline()
            .await?;
        match put {
            Ok(_) => return Ok(Begin::Proceed(Held { seed: seed(now_ms), pk })),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(err) => return Err(ServiceError::from_sdk("dynamodb", err)),
        }
        // The same request, whose holder's lock expired (it died, or its answer was not stored):
        // take it over keeping `taken_ms`, so the rerun derives the same ids as the first run.
        let takeover = backend
            .dynamodb
            .update_item()
            .table_name(&backend.table)
            .key(PK, s(&pk))
            .key(SK, s(META))
            .update_expression(
                "SET #state = :running, locked_until = :lock, taken_ms = if_not_exists(taken_ms, :ms)",
            )
            .condition_expression(
                "(#state = :released OR (#state = :running AND locked_until < :now)) AND fingerprint = :fp AND #expires >= :now",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#expires", EXPIRES_AT)
            .expression_attribute_values(":running", s("in_progress"))
            .expression_attribute_values(":released", s("released"))
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":lock", AttributeValue::N((now + LOCK_SECONDS).to_string()))
            .expression_attribute_values(":ms", AttributeValue::N(now_ms.to_string()))
            .expression_attribute_values(":fp", s(fingerprint))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .within_deadline()
            .await?;
        match takeover {
            Ok(out) => {
                let taken_ms = out.attributes.as_ref().map(|a| get_n(a, "taken_ms")).unwrap_or(now_ms);
                tracing::warn!(%tenant, "idempotency key taken over after its lock expired; rerunning with the same ids");
                return Ok(Begin::Proceed(Held { seed: seed(taken_ms), pk }));
            }
            Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
            Err(err) => return Err(ServiceError::from_sdk("dynamodb", err)),
        }
        let Some(record) = get_meta(&backend.dynamodb, &backend.table, pk.clone()).await? else { continue };
        if get_n(&record, EXPIRES_AT) < now_epoch() {
            continue;
        }
        if get_opt_s(&record, "fingerprint") != Some(fingerprint) {
            return Ok(Begin::Reused);
        }
        if get_opt_s(&record, "state") != Some("completed") {
            return Ok(Begin::InProgress);
        }
        let status = get_n(&record, "status") as u16;
        let parts = get_n(&record, "parts");
        let body = if parts == 0 {
            get_opt_s(&record, "body").unwrap_or_default().to_string()
        } else {
            read_parts(backend, &pk, parts).await?
        };
        return Ok(Begin::Replay(StoredResponse { status, body }));
    }
    Ok(Begin::InProgress)
}

/// Stores the final answer of the request holding the key.
pub async fn complete(backend: &Backend, held: Held, response: &StoredResponse) -> Result<(), ServiceError> {
    let mut update = backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .key(PK, s(&held.pk))
        .key(SK, s(META))
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":done", s("completed"))
        .expression_attribute_values(":status", AttributeValue::N(response.status.to_string()));
    if response.body.len() <= PART_BYTES {
        update = update
            .update_expression("SET #state = :done, #status = :status, body = :body, parts = :parts")
            .expression_attribute_values(":body", s(&response.body))
            .expression_attribute_values(":parts", AttributeValue::N("0".into()));
    } else {
        let chunks = split_utf8(&response.body, PART_BYTES);
        let writes: Vec<Write> = chunks
            .iter()
            .enumerate()
            .map(|(n, chunk)| {
                let mut item: Item = key(held.pk.clone(), &part_sk(n as u64));
                item.insert("body".into(), s(*chunk));
                item.insert(EXPIRES_AT.into(), AttributeValue::N((now_epoch() + RETENTION_SECONDS).to_string()));
                Write::Put(item)
            })
            .collect();
        let (outcomes, _) = write_all(&backend.dynamodb, &backend.table, &writes, &BatchWriterConfig::default()).await;
        if !outcomes.iter().all(|o| o.is_written()) {
            return Err(ServiceError::Unavailable {
                component: "dynamodb",
                message: "could not store the response".into(),
            });
        }
        update = update
            .update_expression("SET #state = :done, #status = :status, parts = :parts")
            .expression_attribute_values(":parts", AttributeValue::N(chunks.len().to_string()));
    }
    update
        .expression_attribute_names("#status", "status")
        .send()
        .within_deadline()
        .await?
        .map_err(|e| ServiceError::from_sdk("dynamodb", e))?;
    Ok(())
}

/// Gives the key back (the request failed transiently): a retry of the same request runs again
/// at once. The record stays, `released`, with its `taken_ms`: a failure may have been ambiguous
/// (a write cut off at the deadline may have landed), so the retry must derive the same ids.
pub async fn release(backend: &Backend, held: Held) -> Result<(), ServiceError> {
    backend
        .dynamodb
        .update_item()
        .table_name(&backend.table)
        .key(PK, s(&held.pk))
        .key(SK, s(META))
        .update_expression("SET #state = :released")
        .condition_expression("#state = :running")
        .expression_attribute_names("#state", "state")
        .expression_attribute_values(":running", s("in_progress"))
        .expression_attribute_values(":released", s("released"))
        .send()
        .within_deadline()
        .await?
        .map(|_| ())
        .or_else(|e| {
            if e.as_service_error().is_some_and(|se| se.is_conditional_check_failed_exception()) {
                Ok(())
            } else {
                Err(ServiceError::from_sdk("dynamodb", e))
            }
        })
}

/// The stored answer's parts, exactly `parts` of them by key (never "whatever has the
/// prefix": a part left from an earlier, longer answer must not be appended).
async fn read_parts(backend: &Backend, pk: &str, parts: u64) -> Result<String, ServiceError> {
    let keys = (0..parts).map(|n| key(pk.to_string(), &part_sk(n))).collect();
    let mut found = crate::ddb::batch_get(&backend.dynamodb, &backend.table, keys, None).await?;
    if found.len() as u64 != parts {
        return Err(ServiceError::Unavailable { component: "dynamodb", message: "stored answer incomplete".into() });
    }
    found.sort_by(|a, b| get_opt_s(a, SK).cmp(&get_opt_s(b, SK)));
    Ok(found.iter().map(|item| get_opt_s(item, "body").unwrap_or_default()).collect())
}

fn part_sk(n: u64) -> String {
    format!("PART#{n:05}")
}

/// Splits at char boundaries into pieces of at most `max` bytes.
fn split_utf8(text: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let mut end = rest.len().min(max);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        parts.push(&rest[..end]);
        rest = &rest[end..];
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_splitting() {
        assert!(validate_key("order-123").is_ok());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        for bad in ["", " spaced key", "tab\tkey", "é"] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        assert!(validate_key(&"k".repeat(256)).is_err());
        let text = "aé".repeat(1000);
        let parts = split_utf8(&text, 7);
        assert!(parts.iter().all(|p| p.len() <= 7));
        assert_eq!(parts.concat(), text);
        assert_ne!(fingerprint("POST /sessions", b"{}"), fingerprint("POST /events", b"{}"));
    }
}
