//! Creating events whose ids the client chose, so that of two concurrent creates of one id with
//! different content exactly one wins.
//!
//! `BatchWriteItem` cannot be conditional: two requests that both checked an id was free would
//! both write it, the last silently replacing the first, and both answer 201. Here each item is
//! a `Put` conditional on its key being absent, sent as `TransactWriteItems` of up to 100 items
//! (fewer calls than `BatchWriteItem`'s 25; each item costs 2 write units instead of 1). A
//! transaction is all or nothing, so when some items find their id taken, DynamoDB names them
//! (`CancellationReasons`, with the stored item): those are decided (200 duplicate if the stored
//! content is the same, else 409 `ID_CONFLICT`) and the rest is sent again. Throttled or
//! conflicting transactions are retried with backoff within the attempts and the deadline;
//! what is left is 503 with the item's id.

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};
use futures::stream::{self, StreamExt};
use serde_json::json;

use crate::batch_writer::{backoff, item_size, BatchWriterConfig};
use crate::bulk::{retry_later, ItemError, ItemResult, Ready};
use crate::ddb::{get_opt_s, Item};
use crate::error::is_transient_sdk_error;
use crate::{Backend, ServiceError};

/// DynamoDB's limits for one transaction.
const MAX_TRANSACTION_ITEMS: usize = 100;
const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;

/// Results for every item, in no particular order.
pub(crate) async fn create(backend: &Backend, ready: Vec<Ready>, config: &BatchWriterConfig) -> Vec<ItemResult> {
    let mut groups: Vec<Vec<Ready>> = Vec::new();
    let mut bytes = 0usize;
    for item in ready {
        let size = item_size(&item.item);
        match groups.last_mut() {
            Some(group) if group.len() < MAX_TRANSACTION_ITEMS && bytes + size <= MAX_TRANSACTION_BYTES => {
                bytes += size;
                group.push(item);
            }
            _ => {
                bytes = size;
                groups.push(vec![item]);
            }
        }
    }
    stream::iter(groups)
        .map(|group| create_group(backend, group, config))
        .buffer_unordered(config.concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect()
}

fn conflict(ready: &Ready) -> ItemResult {
    let mut error = ItemError::new(
        argus_models::error_record::codes::ID_CONFLICT,
        format!("event {} already exists with different content", ready.id),
    );
    error.details.insert("id".into(), json!(ready.id));
    ItemResult::failed(ready.index, 409, error)
}

fn with_id(mut result: ItemResult, ready: &Ready) -> ItemResult {
    result.id = Some(ready.id.to_string());
    result
}

async fn create_group(backend: &Backend, mut pending: Vec<Ready>, config: &BatchWriterConfig) -> Vec<ItemResult> {
    let mut done = Vec::with_capacity(pending.len());
    let mut attempt = 0u32;
    while !pending.is_empty() {
        attempt += 1;
        let mut request = backend.dynamodb.transact_write_items();
        for ready in &pending {
            let put = Put::builder()
                .table_name(&backend.table)
                .set_item(Some(ready.item.clone()))
                // An expired item that TTL has not deleted yet is gone for every read: its id is free.
                .condition_expression("attribute_not_exists(PK) OR #expires <= :epoch")
                .expression_attribute_names("#expires", crate::keys::EXPIRES_AT)
                .expression_attribute_values(":epoch", crate::events::epoch_now())
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
                .build();
            match put {
                Ok(put) => request = request.transact_items(TransactWriteItem::builder().put(put).build()),
                Err(err) => return fail_all(done, &pending, ServiceError::Internal(err.to_string())),
            }
        }
        let sent = match crate::deadline::bounded(request.send()).await {
            Ok(sent) => sent,
            // Not sent, or not confirmed, by the deadline: a retry with the same id is safe.
            Err(_) => return fail_all(done, &pending, crate::deadline::out_of_time()),
        };
        let err = match sent {
            Ok(_) => {
                done.extend(pending.iter().map(|r| ItemResult::ok(r.index, 201, &r.id)));
                return done;
            }
            Err(err) => err,
        };
        let reasons = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                cancelled.cancellation_reasons().to_vec()
            }
            _ if is_transient_sdk_error(&err)
                || err.as_service_error().is_some_and(|e| e.is_throttling_exception()) =>
            {
                Vec::new()
            }
            _ => {
                tracing::error!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err), "TransactWriteItems rejected");
                return fail_all(done, &pending, ServiceError::from_sdk("dynamodb", err));
            }
        };
        // Decide the items DynamoDB named; the others (reason `None`, or throttled) go again.
        let mut still = Vec::with_capacity(pending.len());
        let mut decided_any = false;
        for (position, ready) in pending.into_iter().enumerate() {
            let reason = reasons.get(position);
            match reason.and_then(|r| r.code()) {
                Some("ConditionalCheckFailed") => {
                    decided_any = true;
                    let stored = reason.and_then(|r| r.item());
                    done.push(decided_by_stored(backend, &ready, stored).await);
                }
                Some("ValidationError") => {
                    decided_any = true;
                    let message = reason.and_then(|r| r.message()).unwrap_or("rejected by DynamoDB").to_string();
                    done.push(ItemResult::failed(ready.index, 400, ItemError::new("NOT_WRITABLE", message)));
                }
                _ => still.push(ready),
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if decided_any {
            // The rest was only held back by the decided items: send it again now.
            continue;
        }
        let delay = backoff(config, attempt);
        let out_of_time = config.deadline.is_some_and(|deadline| std::time::Instant::now() + delay >= deadline);
        if attempt >= config.max_attempts || out_of_time || !crate::deadline::sleep_within(delay).await {
            let reason = format!("not written after {attempt} attempts (throttled or contended)");
            done.extend(pending.iter().map(|r| with_id(retry_later(r.index, &reason), r)));
            break;
        }
    }
    done
}

/// An id found taken: the same content is a duplicate (200), other content a conflict (409).
async fn decided_by_stored(backend: &Backend, ready: &Ready, stored: Option<&Item>) -> ItemResult {
    let ours = get_opt_s(&ready.item, "content_hash");
    let theirs = match stored {
        Some(stored) => get_opt_s(stored, "content_hash").map(str::to_string),
        // An endpoint that does not return the stored item: read it.
        None => {
            let pk = get_opt_s(&ready.item, crate::keys::PK).unwrap_or_default().to_string();
            match crate::ddb::get_meta(&backend.dynamodb, &backend.table, pk).await {
                Ok(item) => item.and_then(|i| get_opt_s(&i, "content_hash").map(str::to_string)),
                Err(_) => return with_id(retry_later(ready.index, "could not read the stored event"), ready),
            }
        }
    };
    if theirs.is_some() && theirs.as_deref() == ours {
        ItemResult { duplicate: true, ..ItemResult::ok(ready.index, 200, &ready.id) }
    } else {
        conflict(ready)
    }
}

fn fail_all(mut done: Vec<ItemResult>, pending: &[Ready], err: ServiceError) -> Vec<ItemResult> {
    for ready in pending {
        let result = match &err {
            ServiceError::Unavailable { message, .. } => with_id(retry_later(ready.index, message), ready),
            ServiceError::Internal(_) => {
                ItemResult::failed(ready.index, 500, ItemError::new("INTERNAL_ERROR", "internal error"))
            }
            other => ItemResult::failed(ready.index, 400, ItemError::new("NOT_WRITABLE", other.to_string())),
        };
        done.push(result);
    }
    done
}
