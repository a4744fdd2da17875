//! DynamoDB's TTL service, done locally. DynamoDB Local accepts a TTL setting but never deletes
//! expired items; AWS does, and the change stream then carries a `REMOVE` record whose
//! `userIdentity` names the TTL service (what the archive function keys on). The sweeper
//! deletes items whose TTL attribute is past (a Scan, conditional deletes), and remembers their
//! keys so the stream consumers tag those `REMOVE` records as AWS does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};

/// How long a deleted key is remembered for tagging (every consumer reads it well before).
const REMEMBER: Duration = Duration::from_secs(3_600);

/// Keys the sweeper deleted, shared with the stream consumers.
#[derive(Debug, Clone, Default)]
pub struct TtlMarks(Arc<Mutex<HashMap<(String, String), Instant>>>);

impl TtlMarks {
    fn insert(&self, pk: String, sk: String) {
        if let Ok(mut marks) = self.0.lock() {
            marks.retain(|_, at| at.elapsed() < REMEMBER);
            marks.insert((pk, sk), Instant::now());
        }
    }

    /// Adds the TTL service's `userIdentity` to a `REMOVE` record of a key the sweeper deleted.
    pub fn tag(&self, record: &mut Value) {
        if record["eventName"] != "REMOVE" {
            return;
        }
        let keys = &record["dynamodb"]["Keys"];
        let (Some(pk), Some(sk)) = (keys["PK"]["S"].as_str(), keys["SK"]["S"].as_str()) else { return };
        let deleted = self.0.lock().map(|m| m.contains_key(&(pk.to_string(), sk.to_string()))).unwrap_or(false);
        if deleted {
            record["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
        }
    }
}

/// Deletes every item of `table` whose `attribute` (epoch seconds) is in the past. Returns how
/// many it deleted.
pub async fn sweep(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    attribute: &str,
    marks: &TtlMarks,
) -> Result<usize, String> {
    let now = AttributeValue::N(chrono::Utc::now().timestamp().to_string());
    let mut deleted = 0;
    let mut start = None;
    loop {
        let page = client
            .scan()
            .table_name(table)
            .filter_expression("#ttl < :now")
            .expression_attribute_names("#ttl", attribute)
            .expression_attribute_values(":now", now.clone())
            .projection_expression("PK, SK")
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| format!("TTL scan: {}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))?;
        for item in page.items.unwrap_or_default() {
            let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) = (item.get("PK"), item.get("SK")) else {
                continue;
            };
            // Marked first: the REMOVE record may be read the moment the delete lands.
            marks.insert(pk.clone(), sk.clone());
            let removed = client
                .delete_item()
                .table_name(table)
                .key("PK", AttributeValue::S(pk.clone()))
                .key("SK", AttributeValue::S(sk.clone()))
                // Still expired: an item rewritten meanwhile with a later expiry stays.
                .condition_expression("#ttl < :now")
                .expression_attribute_names("#ttl", attribute)
                .expression_attribute_values(":now", now.clone())
                .send()
                .await;
            match removed {
                Ok(_) => deleted += 1,
                Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(err) => return Err(format!("TTL delete: {}", aws_sdk_dynamodb::error::DisplayErrorContext(&err))),
            }
        }
        match page.last_evaluated_key {
            Some(key) => start = Some(key),
            None => return Ok(deleted),
        }
    }
}

/// Sweeps every `every` until the task is dropped (`make dev`).
pub async fn run(client: aws_sdk_dynamodb::Client, table: String, attribute: String, marks: TtlMarks, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match sweep(&client, &table, &attribute, &marks).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "TTL: expired items deleted"),
            Err(err) => tracing::warn!(error = %err, "TTL sweep failed"),
        }
    }
}
