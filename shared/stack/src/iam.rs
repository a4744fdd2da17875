//! IAM, locally. Neither emulator checks IAM, so the local stack does it: every function's AWS
//! clients carry an [`IamGuard`] interceptor that names the IAM action and resource of each
//! request as AWS would evaluate them, refuses the request when the function's policy in
//! template.yaml does not allow it (as AWS answers AccessDenied), and records it. After the
//! integration suite, [`check`] compares what was recorded with what the template grants, both
//! ways: a missing grant and a grant never used both fail.
//!
//! Mapping (AWS's, not the API's names): each part of a `TransactWriteItems` is authorised as
//! its own action (Put → `dynamodb:PutItem`, Update → `UpdateItem`, Delete → `DeleteItem`,
//! ConditionCheck → `ConditionCheckItem`); there is no IAM action `TransactWriteItems`. A
//! `Query` on an index is authorised on the index ARN, not the table's. SQS batch calls are
//! authorised as their single forms (`SendMessageBatch` → `sqs:SendMessage`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::Value;

use crate::template::{FunctionSpec, PolicyStatement, Template};

/// One authorisation AWS would make: `function` performs `action` on `resource` (a logical
/// resource path: `ArgusTable`, `ArgusTable/index/GSI1`, `EventsQueue`, or `*`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    pub function: String,
    pub action: String,
    pub resource: String,
}

impl Call {
    fn to_line(&self) -> String {
        serde_json::json!({"function": self.function, "action": self.action, "resource": self.resource}).to_string()
    }

    fn from_line(line: &str) -> Option<Self> {
        let v: Value = serde_json::from_str(line).ok()?;
        Some(Self {
            function: v["function"].as_str()?.into(),
            action: v["action"].as_str()?.into(),
            resource: v["resource"].as_str()?.into(),
        })
    }
}

/// Marks a resource that is not in the template (see `IamGuard::read_before_transmit`).
const UNKNOWN_PREFIX: &str = "unknown-";

/// Physical names (table name, queue URL) → logical ids of the template.
#[derive(Debug, Clone, Default)]
pub struct ResourceNames {
    pub tables: BTreeMap<String, String>,
    /// Queue *name* (the URL's last segment: the emulator may answer URLs with another host).
    pub queues: BTreeMap<String, String>,
    /// Bucket name → logical id.
    pub buckets: BTreeMap<String, String>,
}

impl ResourceNames {
    pub fn new(table_name: &str, table_logical_id: &str, queue_urls: &BTreeMap<String, String>) -> Self {
        Self {
            tables: BTreeMap::from([(table_name.to_string(), table_logical_id.to_string())]),
            queues: queue_urls.iter().map(|(logical, url)| (queue_name(url).to_string(), logical.clone())).collect(),
            buckets: BTreeMap::new(),
        }
    }

    /// With the template's buckets (logical id → name).
    pub fn with_buckets(mut self, buckets: &BTreeMap<String, String>) -> Self {
        self.buckets = buckets.iter().map(|(logical, name)| (name.clone(), logical.clone())).collect();
        self
    }

    fn bucket(&self, name: &str) -> String {
        self.buckets.get(name).cloned().unwrap_or_else(|| format!("{UNKNOWN_PREFIX}bucket:{name}"))
    }

    fn table(&self, name: &str) -> String {
        self.tables.get(name).cloned().unwrap_or_else(|| format!("{UNKNOWN_PREFIX}table:{name}"))
    }

    fn queue(&self, url: &str) -> String {
        self.queues.get(queue_name(url)).cloned().unwrap_or_else(|| format!("{UNKNOWN_PREFIX}queue:{url}"))
    }
}

fn queue_name(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// The authorisations one serialized request needs. `service` and `operation` as the SDK names
/// them (`DynamoDB`/`SQS`/`S3`, `TransactWriteItems`); `body` is the JSON request body;
/// `path` the request's path (S3 names the bucket and key there, path-style).
pub fn authorisations(
    service: &str,
    operation: &str,
    body: &Value,
    path: &str,
    names: &ResourceNames,
) -> Vec<(String, String)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    match service.to_ascii_lowercase().as_str() {
        "dynamodb" => {
            let action = |op: &str| format!("dynamodb:{op}");
            match operation {
                "TransactWriteItems" => body["TransactItems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| {
                        [
                            ("Put", "PutItem"),
                            ("Update", "UpdateItem"),
                            ("Delete", "DeleteItem"),
                            ("ConditionCheck", "ConditionCheckItem"),
                        ]
                        .iter()
                        .find_map(|(part, op)| {
                            item.get(*part).map(|p| (action(op), names.table(&text(&p["TableName"]))))
                        })
                    })
                    .collect(),
                "TransactGetItems" => body["TransactItems"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|item| {
                        item.get("Get").map(|g| (action("GetItem"), names.table(&text(&g["TableName"]))))
                    })
                    .collect(),
                "BatchWriteItem" | "BatchGetItem" => body["RequestItems"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(table, _)| (action(operation), names.table(table)))
                    .collect(),
                "ListTables" => vec![(action(operation), "*".into())],
                _ => {
                    let table = names.table(&text(&body["TableName"]));
                    let resource = match body["IndexName"].as_str() {
                        Some(index) => format!("{table}/index/{index}"),
                        None => table,
                    };
                    vec![(action(operation), resource)]
                }
            }
        }
        "sqs" => {
            let single = match operation {
                "SendMessageBatch" => "SendMessage",
                "DeleteMessageBatch" => "DeleteMessage",
                "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
                other => other,
            };
            let resource = match body["QueueUrl"].as_str() {
                Some(url) => names.queue(url),
                None => "*".into(),
            };
            vec![(format!("sqs:{single}"), resource)]
        }
        "s3" => {
            // Multipart uploads are authorised as s3:PutObject, part by part; a presigned
            // GetObject carries the signer's s3:GetObject.
            let action = match operation {
                "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload" | "PutObject" => "PutObject",
                "HeadObject" => "GetObject",
                "ListObjectsV2" | "ListObjects" => "ListBucket",
                other => other,
            };
            let path = path.trim_start_matches('/');
            let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
            let bucket = names.bucket(bucket);
            let resource = if key.is_empty() || action == "ListBucket" { bucket } else { format!("{bucket}/{key}") };
            vec![(format!("s3:{action}"), resource)]
        }
        other => vec![(format!("{other}:{operation}"), "*".into())],
    }
}

fn glob_matches(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((prefix, suffix)) => {
            value.len() >= prefix.len() + suffix.len() && value.starts_with(prefix) && value.ends_with(suffix)
        }
    }
}

/// Whether the policy allows `action` on `resource` (no Deny statements are used here).
pub fn allows(policy: &[PolicyStatement], action: &str, resource: &str) -> bool {
    policy.iter().any(|statement| {
        statement.allow
            && statement.actions.iter().any(|a| glob_matches(&a.to_ascii_lowercase(), &action.to_ascii_lowercase()))
            && statement.resources.iter().any(|r| glob_matches(r, resource))
    })
}

/// The calls recorded by this process, and where they are appended for the post-suite check
/// (`ARGUS_IAM_RECORD_DIR`, set by `make test`).
fn recorded_set() -> &'static Mutex<BTreeSet<Call>> {
    static SET: OnceLock<Mutex<BTreeSet<Call>>> = OnceLock::new();
    SET.get_or_init(Default::default)
}

fn record(call: Call) {
    let Ok(mut set) = recorded_set().lock() else { return };
    if !set.insert(call.clone()) {
        return;
    }
    if let Ok(dir) = std::env::var("ARGUS_IAM_RECORD_DIR") {
        let path = std::path::Path::new(&dir).join(format!("calls-{}.jsonl", std::process::id()));
        if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{}", call.to_line());
        }
    }
}

/// Every call recorded in this process so far.
pub fn recorded() -> BTreeSet<Call> {
    recorded_set().lock().map(|s| s.clone()).unwrap_or_default()
}

/// Reads the calls every test process appended under `dir`.
pub fn read_records(dir: &std::path::Path) -> Result<BTreeSet<Call>, String> {
    let mut calls = BTreeSet::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        calls.extend(text.lines().filter_map(Call::from_line));
    }
    Ok(calls)
}

/// The interceptor on one function's clients.
#[derive(Debug, Clone)]
pub struct IamGuard {
    function: String,
    policy: Arc<Vec<PolicyStatement>>,
    names: Arc<ResourceNames>,
}

impl IamGuard {
    pub fn new(function: &FunctionSpec, names: Arc<ResourceNames>) -> Self {
        Self { function: function.logical_id.clone(), policy: Arc::new(function.policy.clone()), names }
    }
}

impl Intercept for IamGuard {
    fn name(&self) -> &'static str {
        "IamGuard"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(metadata) = cfg.load::<Metadata>() else { return Ok(()) };
        let body: Value =
            context.request().body().bytes().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
        let mut denied = Vec::new();
        let path = context.request().uri().split('?').next().unwrap_or_default();
        // The path as S3 saw it: percent-decoded, after the scheme and host.
        let path = path.split_once("://").map_or(path, |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
        let path = percent_decode(path);
        for (action, resource) in authorisations(metadata.service(), metadata.name(), &body, &path, &self.names) {
            // A table or queue outside the template is a test's deliberately broken resource:
            // it does not exist in AWS either, so there is no policy to judge it by.
            if resource.starts_with(UNKNOWN_PREFIX) {
                continue;
            }
            if !allows(&self.policy, &action, &resource) {
                denied.push(format!("{action} on {resource}"));
            }
            record(Call { function: self.function.clone(), action, resource });
        }
        if denied.is_empty() {
            return Ok(());
        }
        let message = format!(
            "AccessDeniedException: {} is not authorized to perform {} (its policy in template.yaml does not allow it)",
            self.function,
            denied.join(", ")
        );
        tracing::error!(function = %self.function, %message, "IAM denied");
        Err(message.into())
    }
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(byte) =
                std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Violations of the contract between recorded calls and the template's policies: calls the
/// policy does not allow, and grants (action × resource) no recorded call used.
pub fn check(template: &Template, calls: &BTreeSet<Call>) -> Vec<String> {
    let mut violations = Vec::new();
    for call in calls.iter().filter(|c| !c.resource.starts_with(UNKNOWN_PREFIX)) {
        match template.functions.iter().find(|f| f.logical_id == call.function) {
            None => violations.push(format!("{} is not a function of template.yaml", call.function)),
            Some(function) if !allows(&function.policy, &call.action, &call.resource) => violations.push(format!(
                "{} performs {} on {} but its policy does not allow it",
                call.function, call.action, call.resource
            )),
            Some(_) => {}
        }
    }
    for function in &template.functions {
        for statement in function.policy.iter().filter(|s| s.allow) {
            for action in &statement.actions {
                for resource in &statement.resources {
                    let used = calls.iter().any(|c| {
                        c.function == function.logical_id
                            && glob_matches(&action.to_ascii_lowercase(), &c.action.to_ascii_lowercase())
                            && glob_matches(resource, &c.resource)
                    });
                    if !used {
                        violations.push(format!(
                            "{} is granted {action} on {resource}, which no call of the suite used",
                            function.logical_id
                        ));
                    }
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> ResourceNames {
        ResourceNames::new(
            "t1",
            "ArgusTable",
            &BTreeMap::from([("EventsQueue".to_string(), "http://localhost:9324/000000000000/q1".to_string())]),
        )
    }

    #[test]
    fn transactions_are_authorised_part_by_part() {
        let body = json!({"TransactItems": [
            {"Put": {"TableName": "t1"}}, {"Update": {"TableName": "t1"}},
            {"ConditionCheck": {"TableName": "t1"}}, {"Delete": {"TableName": "t1"}}]});
        let actions: Vec<String> =
            authorisations("DynamoDB", "TransactWriteItems", &body, "", &names()).into_iter().map(|a| a.0).collect();
        assert_eq!(
            actions,
            ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem", "dynamodb:DeleteItem"]
        );
    }

    #[test]
    fn index_queries_and_batch_sqs_calls_map_to_their_resources() {
        let query = authorisations("DynamoDB", "Query", &json!({"TableName": "t1", "IndexName": "GSI2"}), "", &names());
        assert_eq!(query, [("dynamodb:Query".to_string(), "ArgusTable/index/GSI2".to_string())]);
        let send = authorisations(
            "SQS",
            "SendMessageBatch",
            &json!({"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123/q1"}),
            "",
            &names(),
        );
        assert_eq!(send, [("sqs:SendMessage".to_string(), "EventsQueue".to_string())]);
        let names = names().with_buckets(&BTreeMap::from([("ExportsBucket".to_string(), "b1".to_string())]));
        let part = authorisations("S3", "UploadPart", &Value::Null, "/b1/exports/t/e/part-00000.csv", &names);
        assert_eq!(part, [("s3:PutObject".to_string(), "ExportsBucket/exports/t/e/part-00000.csv".to_string())]);
        let abort = authorisations("S3", "AbortMultipartUpload", &Value::Null, "/b1/exports/x", &names);
        assert_eq!(abort, [("s3:AbortMultipartUpload".to_string(), "ExportsBucket/exports/x".to_string())]);
    }

    #[test]
    fn a_policy_missing_an_action_or_granting_an_unused_one_fails_the_check() {
        let text = std::fs::read_to_string(crate::template::repo_root().join("template.yaml")).unwrap();
        let template = Template::parse(&text).unwrap();
        let processor = template.function("argus-processor").unwrap();
        // A call its policy does not allow is a violation.
        let calls = BTreeSet::from([Call {
            function: processor.logical_id.clone(),
            action: "dynamodb:DeleteTable".into(),
            resource: "ArgusTable".into(),
        }]);
        let violations = check(&template, &calls);
        assert!(violations.iter().any(|v| v.contains("DeleteTable") && v.contains("does not allow")), "{violations:?}");
        // And with no calls at all, every grant is unused.
        let violations = check(&template, &BTreeSet::new());
        assert!(violations.iter().any(|v| v.contains("ProcessorFunction is granted")), "{violations:?}");
        // Index grants do not cover the table, nor the table grant an index.
        let events = template.function("argus-events").unwrap();
        assert!(allows(&events.policy, "dynamodb:Query", "ArgusTable/index/GSI1"));
        assert!(!allows(&events.policy, "dynamodb:Query", "ArgusTable/index/NOPE"));
        assert!(!allows(&events.policy, "dynamodb:DeleteTable", "ArgusTable"));
    }
}
