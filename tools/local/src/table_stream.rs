//! The DynamoDB Streams → function event source mapping, done locally: reads the table's
//! change stream on DynamoDB Local (its Streams API, `DynamoDBStreams_20120810.*` on the same
//! endpoint), hands each shard's records to the function in Lambda's event shape, and moves on
//! only past what the function did not report in `batchItemFailures`: a reported sequence
//! number is read again, as Lambda retries from it.
//!
//! DynamoDB Local returns the records already in Lambda's JSON shape (DynamoDB JSON images),
//! so they are passed through, with the stream ARN added as Lambda adds it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use argus_stack::template::StreamSource;

use crate::functions::Function;

/// Where a shard is read from next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    Start,
    After(String),
    At(String),
}

#[derive(Debug, Clone)]
pub struct StreamConsumer {
    pub binary: String,
    pub table: String,
    endpoint: String,
    /// Records per invocation (the mapping's `BatchSize`; GetRecords returns at most 1,000).
    batch_size: i64,
    /// The mapping's `FilterCriteria`: records matching none are dropped, never delivered.
    filters: Vec<Value>,
    http: reqwest::Client,
    positions: BTreeMap<String, Position>,
    /// Keys the local TTL sweeper deleted: their `REMOVE` records carry the TTL service's
    /// `userIdentity`, as in AWS.
    ttl_marks: crate::ttl::TtlMarks,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamReport {
    /// Records delivered to the function.
    pub records: usize,
    /// Records read and dropped by the `FilterCriteria`.
    pub filtered_out: usize,
    pub invocations: usize,
    /// Invocations that reported a failure (their records are read again).
    pub retried: usize,
}

impl StreamConsumer {
    pub fn new(binary: &str, table: &str, dynamodb_endpoint: &str, source: &StreamSource) -> Self {
        Self {
            binary: binary.to_string(),
            table: table.to_string(),
            endpoint: dynamodb_endpoint.to_string(),
            batch_size: source.batch_size.clamp(1, 1_000),
            filters: source.filters.clone(),
            http: {
                argus_core::aws::install_tls_provider();
                reqwest::Client::new()
            },
            positions: BTreeMap::new(),
            ttl_marks: Default::default(),
        }
    }

    /// Tags the `REMOVE` records of keys `marks` holds as TTL deletions.
    pub fn with_ttl_marks(mut self, marks: crate::ttl::TtlMarks) -> Self {
        self.ttl_marks = marks;
        self
    }

    /// One call of DynamoDB Local's JSON API. The credential scope must be the one the SDK
    /// clients use (DynamoDB Local keeps tables per access key and region).
    async fn call(&self, target: &str, body: Value) -> Result<Value, String> {
        let response = self
            .http
            .post(&self.endpoint)
            .header("Content-Type", "application/x-amz-json-1.0")
            .header("X-Amz-Target", target)
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| format!("{target}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{target}: {status} {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{target}: {e}"))
    }

    async fn stream_arn(&self) -> Result<String, String> {
        let table = self.call("DynamoDB_20120810.DescribeTable", json!({"TableName": self.table})).await?;
        table["Table"]["LatestStreamArn"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("table {} has no stream (StreamSpecification)", self.table))
    }

    /// Reads every shard once, from where it was left, and invokes the function with each
    /// batch. Returns what was delivered.
    pub async fn drain_once(&mut self, function: &Function) -> Result<StreamReport, String> {
        let arn = self.stream_arn().await?;
        let described = self.call("DynamoDBStreams_20120810.DescribeStream", json!({"StreamArn": arn})).await?;
        let shards: Vec<String> = described["StreamDescription"]["Shards"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["ShardId"].as_str().map(str::to_string))
            .collect();
        let mut report = StreamReport::default();
        for shard in shards {
            let position = self.positions.get(&shard).cloned().unwrap_or(Position::Start);
            let mut request = json!({"StreamArn": arn, "ShardId": shard});
            match &position {
                Position::Start => request["ShardIteratorType"] = json!("TRIM_HORIZON"),
                Position::After(seq) => {
                    request["ShardIteratorType"] = json!("AFTER_SEQUENCE_NUMBER");
                    request["SequenceNumber"] = json!(seq);
                }
                Position::At(seq) => {
                    request["ShardIteratorType"] = json!("AT_SEQUENCE_NUMBER");
                    request["SequenceNumber"] = json!(seq);
                }
            }
            let iterator = self.call("DynamoDBStreams_20120810.GetShardIterator", request).await?;
            let Some(iterator) = iterator["ShardIterator"].as_str() else { continue };
            let got = self
                .call(
                    "DynamoDBStreams_20120810.GetRecords",
                    json!({"ShardIterator": iterator, "Limit": self.batch_size}),
                )
                .await?;
            let read: Vec<Value> = got["Records"].as_array().cloned().unwrap_or_default();
            let Some(last) = read.last().and_then(|r| r["dynamodb"]["SequenceNumber"].as_str()).map(str::to_string)
            else {
                continue;
            };
            report.filtered_out += read.len();
            let mut read = read;
            for record in &mut read {
                self.ttl_marks.tag(record);
            }
            let mut records: Vec<Value> = read.into_iter().filter(|r| self.delivers(r)).collect();
            report.filtered_out -= records.len();
            if records.is_empty() {
                // Lambda moves past records no filter matches without an invocation.
                self.positions.insert(shard, Position::After(last));
                continue;
            }
            for record in &mut records {
                record["eventSourceARN"] = json!(arn);
            }
            report.records += records.len();
            report.invocations += 1;
            match self.invoke(function, &records).await {
                Some(retry_from) => {
                    report.retried += 1;
                    self.positions.insert(shard, Position::At(retry_from));
                }
                None => {
                    self.positions.insert(shard, Position::After(last));
                }
            }
        }
        Ok(report)
    }

    fn delivers(&self, record: &Value) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|pattern| matches(pattern, record))
    }

    /// Invokes the function with one batch; `Some(sequence)` to read again from there (a
    /// reported failure, or a failed or timed-out invocation: the whole batch).
    async fn invoke(&self, function: &Function, records: &[Value]) -> Option<String> {
        let first = records.first().and_then(|r| r["dynamodb"]["SequenceNumber"].as_str()).map(str::to_string);
        let event = json!({ "Records": records }).to_string();
        let deadline = std::time::Instant::now() + function.timeout();
        let invoked = tokio::time::timeout(
            function.timeout(),
            argus_api::dispatch::invoke_json(&self.binary, &function.backend, &event, Some(deadline)),
        )
        .await
        .unwrap_or_else(|_| Err(format!("{} timed out after {:?}", function.spec.logical_id, function.timeout())));
        match invoked {
            Ok(response) => response["batchItemFailures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_string))
                .next(),
            Err(err) => {
                tracing::error!(error = %err, function = %self.binary, "stream batch failed; retrying it");
                first
            }
        }
    }

    /// Drains until the task is dropped: a pass over the shards every 250 ms, and at once again
    /// after a pass that found records.
    pub async fn run(mut self, function: Function) {
        loop {
            match self.drain_once(&function).await {
                Ok(report) if report.records + report.filtered_out > 0 => tracing::debug!(?report, "stream drained"),
                Ok(_) => tokio::time::sleep(Duration::from_millis(250)).await,
                Err(err) => {
                    tracing::warn!(error = %err, "stream drain failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// Consumers for every DynamoDB Streams event source in the template.
pub fn consumers(template: &argus_stack::Template, table: &str, dynamodb_endpoint: &str) -> Vec<StreamConsumer> {
    template
        .stream_consumers
        .iter()
        .map(|(binary, source)| StreamConsumer::new(binary, table, dynamodb_endpoint, source))
        .collect()
}

/// Lambda's event filtering, for the pattern forms the template uses: an object matches when
/// each of its keys matches the record's value there; an array lists the values accepted.
pub fn matches(pattern: &Value, value: &Value) -> bool {
    match pattern {
        Value::Object(fields) => fields.iter().all(|(key, sub)| matches(sub, value.get(key).unwrap_or(&Value::Null))),
        Value::Array(accepted) => accepted.iter().any(|candidate| candidate == value),
        other => other == value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_patterns_match_like_lambda() {
        let pattern = json!({"dynamodb": {"NewImage": {"entity": {"S": ["event", "error"]}}}});
        let event =
            json!({"eventName": "INSERT", "dynamodb": {"NewImage": {"entity": {"S": "event"}, "n": {"N": "1"}}}});
        let marker = json!({"eventName": "INSERT", "dynamodb": {"NewImage": {"PK": {"S": "AGG#1"}}}});
        let removal = json!({"eventName": "REMOVE", "dynamodb": {"OldImage": {"entity": {"S": "event"}}}});
        assert!(matches(&pattern, &event));
        assert!(!matches(&pattern, &marker));
        assert!(!matches(&pattern, &removal));
        assert!(matches(&json!({"dynamodb": {"OldImage": {"entity": {"S": ["event"]}}}}), &removal));
    }
}
