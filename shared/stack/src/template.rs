//! The parts of template.yaml the local stack needs.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    /// As declared: `/sessions/{id}`, `/sessions/`, or `$default`.
    pub path: String,
    /// The function's binary (`BuildProperties.Binary`), which names its handler.
    pub binary: String,
    /// False where the route sets `Auth: {Authorizer: NONE}`.
    pub authorized: bool,
}

#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub logical_id: String,
    pub visibility_timeout: Option<i64>,
    pub retention_seconds: Option<i64>,
    /// (logical id of the dead-letter queue, maxReceiveCount)
    pub redrive: Option<(String, i64)>,
}

/// One statement of a function's inline policy (`Policies: - Statement: [...]`).
/// An `AWS::S3::Bucket` of the template, with its properties as written.
#[derive(Debug, Clone)]
pub struct BucketSpec {
    pub logical_id: String,
    pub props: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyStatement {
    pub allow: bool,
    /// `dynamodb:PutItem`, `sqs:SendMessage`, possibly with `*`.
    pub actions: Vec<String>,
    /// Logical resource paths: `ArgusTable`, `ArgusTable/index/GSI1`, `EventsQueue`, or `*`.
    pub resources: Vec<String>,
}

/// A DynamoDB Streams event source of a function.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSource {
    pub batch_size: i64,
    /// `FilterCriteria` patterns: a record is delivered when it matches any (all when none).
    pub filters: Vec<serde_json::Value>,
}

#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: names the handler.
    pub binary: String,
    /// The function's `Timeout` (or the Globals'), seconds: its deadline per invocation.
    pub timeout_seconds: u64,
    pub memory_mb: u64,
    pub policy: Vec<PolicyStatement>,
}

#[derive(Debug, Clone)]
pub struct Template {
    pub routes: Vec<Route>,
    /// Every `AWS::Serverless::Function`, with or without events.
    pub functions: Vec<FunctionSpec>,
    /// The `Properties` of the one `AWS::DynamoDB::Table`.
    pub table: Value,
    /// Its logical id (`ArgusTable`).
    pub table_id: String,
    pub queues: Vec<QueueSpec>,
    pub buckets: Vec<BucketSpec>,
    /// The API's authorizer cache TTL (`Identity.ReauthorizeEvery`, seconds; 0 = no cache).
    pub authorizer_ttl_seconds: u64,
    /// The authorizer's identity sources (`Identity.Headers`): when any is absent API Gateway
    /// answers 401 itself. None: the authorizer sees every request (and nothing is cached).
    pub authorizer_identity_headers: Vec<String>,
    /// Function binary → how often its `Schedule` event runs it (seconds).
    pub schedules: BTreeMap<String, u64>,
    /// Function binary → the batch size of its SQS event source (the processor).
    pub sqs_consumers: BTreeMap<String, (String, i64)>,
    /// Function binary → its DynamoDB Streams event source on the table.
    pub stream_consumers: BTreeMap<String, StreamSource>,
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        Self::parse(&text)
    }

    /// The repository's template (this crate lives at shared/stack).
    pub fn load_repo() -> Result<Self, String> {
        Self::load(&repo_root().join("template.yaml"))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let doc: Value = serde_yaml_ng::from_str(text).map_err(|e| format!("template.yaml: {e}"))?;
        let resources = doc.get("Resources").and_then(Value::as_mapping).ok_or("template.yaml has no Resources")?;
        let globals = doc.get("Globals").and_then(|g| g.get("Function"));
        // SAM's own defaults when neither the function nor Globals set them.
        let global_timeout = globals.and_then(|g| g.get("Timeout")).and_then(Value::as_u64).unwrap_or(3);
        let global_memory = globals.and_then(|g| g.get("MemorySize")).and_then(Value::as_u64).unwrap_or(128);
        let mut functions = Vec::new();
        let mut routes = Vec::new();
        // SAM's default when an authorizer sets no ReauthorizeEvery.
        let mut authorizer_ttl_seconds = 300;
        let mut authorizer_identity_headers = Vec::new();
        let mut table = None;
        let mut queues = Vec::new();
        let mut buckets = Vec::new();
        let mut sqs_consumers = BTreeMap::new();
        let mut stream_consumers = BTreeMap::new();
        let mut schedules = BTreeMap::new();
        for (logical_id, resource) in resources {
            let logical_id = logical_id.as_str().ok_or("non-string resource id")?.to_string();
            let kind = resource.get("Type").and_then(Value::as_str).unwrap_or_default();
            let props = resource.get("Properties").cloned().unwrap_or(Value::Null);
            match kind {
                "AWS::Serverless::Function" => {
                    let binary = resource
                        .get("Metadata")
                        .and_then(|m| m.get("BuildProperties"))
                        .and_then(|b| b.get("Binary"))
                        .and_then(Value::as_str)
                        .ok_or_else(|| format!("{logical_id} has no Metadata.BuildProperties.Binary"))?
                        .to_string();
                    functions.push(FunctionSpec {
                        logical_id: logical_id.clone(),
                        binary: binary.clone(),
                        timeout_seconds: props.get("Timeout").and_then(Value::as_u64).unwrap_or(global_timeout),
                        memory_mb: props.get("MemorySize").and_then(Value::as_u64).unwrap_or(global_memory),
                        policy: policy_statements(&logical_id, props.get("Policies"))?,
                    });
                    let Some(events) = props.get("Events").and_then(Value::as_mapping) else { continue };
                    for (_, event) in events {
                        let event_props = event.get("Properties").cloned().unwrap_or(Value::Null);
                        match event.get("Type").and_then(Value::as_str) {
                            Some("HttpApi") => {
                                let authorized =
                                    event_props.get("Auth").and_then(|a| a.get("Authorizer")).and_then(Value::as_str)
                                        != Some("NONE");
                                routes.push(Route {
                                    method: str_prop(&event_props, "Method")?.to_uppercase(),
                                    path: str_prop(&event_props, "Path")?,
                                    binary: binary.clone(),
                                    authorized,
                                });
                            }
                            Some("Schedule") => {
                                let rate = str_prop(&event_props, "Schedule")?;
                                schedules.insert(binary.clone(), rate_seconds(&rate)?);
                            }
                            Some("SQS") => {
                                let queue = ref_target(event_props.get("Queue")).ok_or("SQS event without a queue")?;
                                let batch = event_props.get("BatchSize").and_then(Value::as_i64).unwrap_or(10);
                                sqs_consumers.insert(binary.clone(), (queue, batch));
                            }
                            Some("DynamoDB") => {
                                let batch_size = event_props.get("BatchSize").and_then(Value::as_i64).unwrap_or(100);
                                let filters = stream_filters(event_props.get("FilterCriteria"))?;
                                stream_consumers.insert(binary.clone(), StreamSource { batch_size, filters });
                            }
                            _ => {}
                        }
                    }
                }
                "AWS::Serverless::HttpApi" => {
                    let authorizers = props.get("Auth").and_then(|a| a.get("Authorizers")).and_then(Value::as_mapping);
                    if let Some((_, authorizer)) = authorizers.and_then(|a| a.iter().next()) {
                        let identity = authorizer.get("Identity");
                        if let Some(ttl) = identity.and_then(|i| i.get("ReauthorizeEvery")) {
                            authorizer_ttl_seconds = ttl.as_u64().ok_or("ReauthorizeEvery is not a number")?;
                        }
                        authorizer_identity_headers = identity
                            .and_then(|i| i.get("Headers"))
                            .and_then(Value::as_sequence)
                            .map(|headers| headers.iter().filter_map(Value::as_str).map(str::to_lowercase).collect())
                            .unwrap_or_default();
                        // API Gateway refuses a cache without identity sources to key it by.
                        if authorizer_ttl_seconds > 0 && authorizer_identity_headers.is_empty() {
                            return Err("an authorizer cache (ReauthorizeEvery > 0) needs identity sources".into());
                        }
                    }
                }
                "AWS::DynamoDB::Table" if table.is_some() => {
                    return Err("template.yaml must define exactly one table".into());
                }
                "AWS::DynamoDB::Table" => table = Some((logical_id, props)),
                "AWS::S3::Bucket" => buckets.push(BucketSpec { logical_id, props }),
                "AWS::SQS::Queue" => {
                    let redrive = match props.get("RedrivePolicy") {
                        Some(policy) => Some((
                            ref_target(policy.get("deadLetterTargetArn")).ok_or("RedrivePolicy without a target")?,
                            policy.get("maxReceiveCount").and_then(Value::as_i64).ok_or("maxReceiveCount missing")?,
                        )),
                        None => None,
                    };
                    queues.push(QueueSpec {
                        logical_id,
                        visibility_timeout: props.get("VisibilityTimeout").and_then(Value::as_i64),
                        retention_seconds: props.get("MessageRetentionPeriod").and_then(Value::as_i64),
                        redrive,
                    });
                }
                _ => {}
            }
        }
        let (table_id, table) = table.ok_or("template.yaml defines no table")?;
        Ok(Self {
            routes,
            functions,
            table,
            table_id,
            queues,
            buckets,
            authorizer_ttl_seconds,
            authorizer_identity_headers,
            schedules,
            sqs_consumers,
            stream_consumers,
        })
    }

    pub fn function(&self, binary: &str) -> Option<&FunctionSpec> {
        self.functions.iter().find(|f| f.binary == binary)
    }
}

/// The `FilterCriteria` patterns of an event source, parsed (each `Pattern` is JSON text).
fn stream_filters(criteria: Option<&Value>) -> Result<Vec<serde_json::Value>, String> {
    let Some(filters) = criteria.and_then(|c| c.get("Filters")).and_then(Value::as_sequence) else {
        return Ok(Vec::new());
    };
    filters
        .iter()
        .map(|f| {
            let pattern = f.get("Pattern").and_then(Value::as_str).ok_or("a filter without a Pattern")?;
            serde_json::from_str(pattern).map_err(|e| format!("FilterCriteria pattern {pattern}: {e}"))
        })
        .collect()
}

/// The inline statements of `Policies`. Only `Statement` documents are supported: a SAM policy
/// template (`DynamoDBCrudPolicy`, ...) grants more than the function uses, so it is refused.
fn policy_statements(function: &str, policies: Option<&Value>) -> Result<Vec<PolicyStatement>, String> {
    let mut statements = Vec::new();
    for policy in policies.and_then(Value::as_sequence).into_iter().flatten() {
        let Some(list) = policy.get("Statement") else {
            return Err(format!("{function}: only inline `Statement` policies are supported, found {policy:?}"));
        };
        let list = match list {
            Value::Sequence(items) => items.clone(),
            single => vec![single.clone()],
        };
        for statement in list {
            let strings = |name: &str| -> Vec<Value> {
                match statement.get(name) {
                    Some(Value::Sequence(items)) => items.clone(),
                    Some(single) => vec![single.clone()],
                    None => Vec::new(),
                }
            };
            let actions = strings("Action").iter().filter_map(Value::as_str).map(str::to_string).collect();
            let resources = strings("Resource")
                .iter()
                .map(|r| resource_path(r).ok_or_else(|| format!("{function}: unsupported policy resource {r:?}")))
                .collect::<Result<_, _>>()?;
            statements.push(PolicyStatement {
                allow: statement.get("Effect").and_then(Value::as_str) == Some("Allow"),
                actions,
                resources,
            });
        }
    }
    Ok(statements)
}

/// `!GetAtt ArgusTable.Arn` → `ArgusTable`; `!Sub '${ArgusTable.Arn}/index/GSI1'` →
/// `ArgusTable/index/GSI1`; `'*'` → `*`.
fn resource_path(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s == "*" => Some("*".into()),
        Value::Tagged(tagged) if tagged.tag == "!Sub" || tagged.tag == "Sub" => {
            let text = tagged.value.as_str()?;
            let rest = text.strip_prefix("${")?;
            let (reference, suffix) = rest.split_once('}')?;
            let logical = reference.strip_suffix(".Arn")?;
            Some(format!("{logical}{suffix}"))
        }
        Value::Tagged(_) | Value::Mapping(_) => ref_target(Some(value)),
        _ => None,
    }
}

/// `rate(1 minute)`, `rate(5 minutes)`, `rate(1 hour)` → seconds (cron is not supported).
fn rate_seconds(expression: &str) -> Result<u64, String> {
    let inner = expression
        .strip_prefix("rate(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("unsupported schedule {expression:?}: use rate(...)"))?;
    let (count, unit) = inner.trim().split_once(' ').ok_or_else(|| format!("bad rate {expression:?}"))?;
    let count: u64 = count.parse().map_err(|_| format!("bad rate {expression:?}"))?;
    let unit_seconds = match unit.trim_end_matches('s') {
        "minute" => 60,
        "hour" => 3600,
        "day" => 86_400,
        _ => return Err(format!("bad rate unit in {expression:?}")),
    };
    Ok(count * unit_seconds)
}

fn str_prop(props: &Value, name: &str) -> Result<String, String> {
    props.get(name).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("route without {name}"))
}

/// The logical id behind `!Ref X`, `!GetAtt X.Arn` or `{"Fn::GetAtt": [X, Arn]}`.
fn ref_target(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::Tagged(tagged) => {
            let target = tagged.value.as_str()?;
            Some(target.split('.').next().unwrap_or(target).to_string())
        }
        Value::Mapping(map) => {
            let (_, inner) = map.iter().next()?;
            match inner {
                Value::Sequence(parts) => parts.first()?.as_str().map(str::to_string),
                Value::String(s) => Some(s.split('.').next().unwrap_or(s).to_string()),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The repository root, for tools and tests that read template.yaml and events/.
pub fn repo_root() -> std::path::PathBuf {
    if let Ok(root) = std::env::var("ARGUS_REPO_ROOT") {
        return root.into();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_repository_template() {
        let template = Template::load_repo().unwrap();
        assert!(template.routes.iter().any(|r| r.method == "POST" && r.path == "/sessions" && r.authorized));
        assert!(template.routes.iter().any(|r| r.path == "/health" && !r.authorized));
        let main = template.queues.iter().find(|q| q.logical_id == "EventsQueue").unwrap();
        assert_eq!(main.redrive, Some(("EventsDeadLetterQueue".to_string(), 5)));
        assert!(template.table.get("KeySchema").is_some());
        let events = template.function("argus-events").unwrap();
        assert_eq!(events.logical_id, "EventsFunction");
        assert_eq!(events.timeout_seconds, 29);
        assert!(events.policy.iter().any(|s| s.allow
            && s.actions.contains(&"dynamodb:Query".to_string())
            && s.resources.contains(&"ArgusTable/index/GSI2".to_string())));
        assert!(template.function("argus-authorizer").is_some_and(|f| f.timeout_seconds == 10));
        // No identity source, no API Gateway cache: both kinds of credential reach the authorizer.
        assert_eq!(template.authorizer_ttl_seconds, 0);
        assert!(template.authorizer_identity_headers.is_empty());
        assert_eq!(template.schedules.get("argus-sweeper"), Some(&60));
        assert_eq!(rate_seconds("rate(5 minutes)"), Ok(300));
        assert!(rate_seconds("cron(0 * * * ? *)").is_err());
    }
}
