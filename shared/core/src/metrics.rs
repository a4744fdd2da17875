//! CloudWatch metrics in the Embedded Metric Format (EMF): one JSON line per record on stdout.
//! In Lambda, stdout goes to CloudWatch Logs, and CloudWatch extracts the metrics from it: no
//! `PutMetricData` call, no added latency, no IAM grant, nothing lost when a call would fail.
//!
//! A small module of our own rather than `metrics_cloudwatch_embedded`: that crate sits on the
//! `metrics` facade and its registry (more dependencies in every function) for what is one
//! `serde_json` object per record here.
//!
//! Dimensions, and why none can explode (each distinct combination is a billed metric):
//! - `Service` (always `argus`): every metric rolls up without other dimensions.
//! - `Function`: the binary name (8 values).
//! - `Route` + `StatusClass`: the route key as declared (`POST /events`, 21 routes plus
//!   `$default`) and `2xx`…`5xx`. Never the concrete path, which holds ids.
//! - `ErrorCode`: for rejected events, one of the static codes (`SESSION_NOT_FOUND`, …).
//!
//! Tenant and stream are chosen by clients, so they are never dimensions.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::bulk::ItemResult;

pub const NAMESPACE: &str = "Argus";
pub const SERVICE: &str = "argus";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF record: its dimensions, metrics (a value or many, for percentiles) and properties.
#[derive(Debug, Clone, Default)]
pub struct Record {
    dimensions: Vec<(&'static str, String)>,
    metrics: Vec<(&'static str, Unit, Vec<f64>)>,
    properties: Map<String, Value>,
}

impl Record {
    pub fn new(function: &str) -> Self {
        Self::default().dimension("Function", function)
    }

    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    pub fn metric(mut self, name: &'static str, unit: Unit, values: Vec<f64>) -> Self {
        if !values.is_empty() {
            self.metrics.push((name, unit, values));
        }
        self
    }

    pub fn count(self, name: &'static str, n: usize) -> Self {
        self.metric(name, Unit::Count, vec![n as f64])
    }

    pub fn property(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.properties.insert(name.to_string(), value.into());
        self
    }

    /// The record as EMF JSON. Metrics are published at three levels: `Service` alone,
    /// `Service` + `Function`, and every dimension of the record.
    pub fn to_json(&self, timestamp_ms: i64) -> Value {
        let mut root = self.properties.clone();
        root.insert("Service".into(), json!(SERVICE));
        for (name, value) in &self.dimensions {
            root.insert((*name).into(), json!(value));
        }
        let names: Vec<&str> = self.dimensions.iter().map(|(n, _)| *n).collect();
        let mut sets: Vec<Vec<&str>> = vec![vec!["Service"]];
        if names.contains(&"Function") {
            sets.push(vec!["Service", "Function"]);
        }
        if names.len() > 1 {
            sets.push(std::iter::once("Service").chain(names.iter().copied()).collect());
        }
        let mut definitions = Vec::new();
        for (name, unit, values) in &self.metrics {
            definitions.push(json!({"Name": name, "Unit": unit.name()}));
            root.insert((*name).into(), if values.len() == 1 { json!(values[0]) } else { json!(values) });
        }
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": sets, "Metrics": definitions}],
            }),
        );
        Value::Object(root)
    }

    /// Writes the record (nothing if it holds no metric). EMF takes at most 100 values per
    /// metric in one record: more are written as several records.
    pub fn emit(self) {
        let now = chrono::Utc::now().timestamp_millis();
        for part in self.split(MAX_VALUES_PER_METRIC) {
            write_line(part.to_json(now).to_string());
        }
    }

    /// The record as records of at most `max` values per metric.
    fn split(self, max: usize) -> Vec<Record> {
        let longest = self.metrics.iter().map(|(_, _, values)| values.len()).max().unwrap_or(0);
        if longest <= max {
            return if self.metrics.is_empty() { Vec::new() } else { vec![self] };
        }
        (0..longest.div_ceil(max))
            .map(|part| Record {
                metrics: self
                    .metrics
                    .iter()
                    .filter_map(|(name, unit, values)| {
                        let slice: Vec<f64> = values.iter().skip(part * max).take(max).copied().collect();
                        (!slice.is_empty()).then_some((*name, *unit, slice))
                    })
                    .collect(),
                ..self.clone()
            })
            .collect()
    }
}

/// EMF's limit on the values of one metric in one record.
pub const MAX_VALUES_PER_METRIC: usize = 100;

fn write_line(line: String) {
    if let Ok(mut captured) = CAPTURED.lock() {
        if let Some(lines) = captured.as_mut() {
            lines.push(line);
            return;
        }
    }
    if enabled() {
        // One write per line: concurrent records never interleave.
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(format!("{line}\n").as_bytes());
    }
}

static CAPTURED: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// In Lambda (where stdout is the function's log) or with `ARGUS_METRICS=stdout`; the local
/// runner keeps its terminal readable otherwise.
fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| match std::env::var("ARGUS_METRICS").as_deref() {
        Ok("stdout") => true,
        Ok(_) => false,
        Err(_) => std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok(),
    })
}

/// From now on records are kept for [`take_captured`] instead of written (tests).
pub fn capture() {
    if let Ok(mut captured) = CAPTURED.lock() {
        captured.get_or_insert_with(Vec::new);
    }
}

/// The records captured since [`capture`], parsed.
pub fn take_captured() -> Vec<Value> {
    let lines = CAPTURED.lock().ok().and_then(|mut c| c.as_mut().map(std::mem::take)).unwrap_or_default();
    lines.iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// One HTTP request: count and latency by route and status class.
pub fn request(function: &str, route_key: &str, status: u16, latency_ms: f64, tenant: Option<&str>) {
    let mut record = Record::new(function)
        .dimension("Route", route_key)
        .dimension("StatusClass", format!("{}xx", status / 100))
        .count("Requests", 1)
        .metric("Latency", Unit::Milliseconds, vec![latency_ms])
        .property("status", status);
    if let Some(tenant) = tenant {
        record = record.property("tenant", tenant);
    }
    record.emit();
}

/// What happened to events in one unit of work (a processor batch, a bulk call, a job chunk).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventCounts {
    /// Accepted for processing (queued, or taken by a bulk call).
    pub accepted: usize,
    pub stored: usize,
    pub duplicates: usize,
    /// Not done now, to be done again (redelivered messages, 503 items).
    pub retried: usize,
    /// Refused or recorded as errors, by code.
    pub rejected: BTreeMap<String, usize>,
    /// `received_at` → stored, per stored event.
    pub lag_ms: Vec<f64>,
}

impl EventCounts {
    /// Counts from per-item results: 201 stored, 200 a duplicate, 503 retried, any other
    /// failure rejected under its most specific code (the field's, for a validation error).
    pub fn from_results(results: &[ItemResult]) -> Self {
        let mut counts = Self { accepted: results.len(), ..Self::default() };
        for result in results {
            match (result.status, &result.error) {
                (201, _) => counts.stored += 1,
                (200, _) if result.duplicate => counts.duplicates += 1,
                (503, _) => counts.retried += 1,
                (_, Some(error)) => {
                    let field_code = error
                        .details
                        .get("fields")
                        .and_then(|f| f.get(0))
                        .and_then(|f| f.get("code"))
                        .and_then(Value::as_str);
                    *counts.rejected.entry(field_code.unwrap_or(&error.code).to_string()).or_default() += 1;
                }
                _ => counts.stored += 1,
            }
        }
        counts
    }

    pub fn add(&mut self, other: EventCounts) {
        self.accepted += other.accepted;
        self.stored += other.stored;
        self.duplicates += other.duplicates;
        self.retried += other.retried;
        for (code, n) in other.rejected {
            *self.rejected.entry(code).or_default() += n;
        }
        self.lag_ms.extend(other.lag_ms);
    }

    pub fn rejected_total(&self) -> usize {
        self.rejected.values().sum()
    }

    /// Writes the counts: one record for the totals (zeros left out), one per rejection code.
    pub fn emit(&self, function: &str) {
        let mut record = Record::new(function);
        for (name, n) in [
            ("EventsAccepted", self.accepted),
            ("EventsStored", self.stored),
            ("EventsDuplicate", self.duplicates),
            ("EventsRetried", self.retried),
            ("EventsRejected", self.rejected_total()),
        ] {
            if n > 0 {
                record = record.count(name, n);
            }
        }
        record.metric("IngestionLag", Unit::Milliseconds, self.lag_ms.clone()).emit();
        for (code, n) in &self.rejected {
            Record::new(function).dimension("ErrorCode", code.clone()).count("EventsRejectedByCode", *n).emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_100_values_are_split_across_records() {
        let record = Record::new("argus-processor").count("EventsStored", 250).metric(
            "IngestionLag",
            Unit::Milliseconds,
            (0..250).map(f64::from).collect(),
        );
        let parts = record.split(MAX_VALUES_PER_METRIC);
        let lags: Vec<usize> =
            parts.iter().map(|p| p.metrics.iter().find(|m| m.0 == "IngestionLag").unwrap().2.len()).collect();
        assert_eq!(lags, [100, 100, 50]);
        let counts = parts.iter().filter(|p| p.metrics.iter().any(|m| m.0 == "EventsStored")).count();
        assert_eq!(counts, 1, "a count is written once");
        assert!(Record::new("f").split(100).is_empty());
    }

    #[test]
    fn a_record_is_emf_with_three_dimension_levels() {
        let record = Record::new("argus-events")
            .dimension("Route", "POST /events")
            .dimension("StatusClass", "2xx")
            .count("Requests", 1)
            .metric("Latency", Unit::Milliseconds, vec![12.5, 3.0])
            .property("tenant", "acme")
            .to_json(1_700_000_000_000);
        let directive = &record["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(record["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(directive["Namespace"], "Argus");
        assert_eq!(
            directive["Dimensions"],
            json!([["Service"], ["Service", "Function"], ["Service", "Function", "Route", "StatusClass"]])
        );
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "Requests", "Unit": "Count"}, {"Name": "Latency", "Unit": "Milliseconds"}])
        );
        // Every dimension and metric named in the directive is a member of the record.
        assert_eq!((record["Service"].clone(), record["Function"].clone()), (json!("argus"), json!("argus-events")));
        assert_eq!(record["Route"], "POST /events");
        assert_eq!(record["Requests"], 1.0);
        assert_eq!(record["Latency"], json!([12.5, 3.0]));
        assert_eq!(record["tenant"], "acme");
    }
}
