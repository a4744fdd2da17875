//! The definitions that must agree: template.yaml's routes, the handlers' route table,
//! docs/openapi.yaml, and the table/queues the local stack provisions.

use std::collections::BTreeSet;

use argus_stack::template::repo_root;
use argus_tests::TestStack;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml_ng::Value;

/// (index name, key schema, projection type)
type IndexShape = (String, Vec<(String, String)>, String);

fn canonical(path: &str) -> String {
    argus_api::routes::normalize(path).to_string()
}

#[test]
fn template_routes_handler_table_and_openapi_agree() {
    let template = argus_stack::Template::load_repo().unwrap();
    let declared: Vec<(String, String, String)> = template
        .routes
        .iter()
        .filter(|r| r.path != "$default")
        .map(|r| (r.method.clone(), r.path.clone(), r.binary.clone()))
        .collect();

    // Every route is declared with and without its trailing slash (the_eye clients use both).
    let exact: BTreeSet<(String, String)> = declared.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    for (method, path, _) in &declared {
        let twin = if path.ends_with('/') { canonical(path) } else { format!("{path}/") };
        assert!(exact.contains(&(method.clone(), twin.clone())), "{method} {path} lacks its twin {twin}");
    }
    assert!(template.routes.iter().any(|r| r.path == "$default" && r.binary == "argus-health"));

    let from_template: BTreeSet<(String, String, String)> =
        declared.iter().map(|(m, p, b)| (m.clone(), canonical(p), b.clone())).collect();
    let from_handlers: BTreeSet<(String, String, String)> =
        argus_api::routes::ROUTES.iter().map(|(m, p, b, _)| (m.to_string(), p.to_string(), b.to_string())).collect();
    assert_eq!(from_template, from_handlers, "argus_api::routes::ROUTES differs from template.yaml");

    let openapi: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(repo_root().join("docs/openapi.yaml")).unwrap()).unwrap();
    assert_eq!(openapi["openapi"].as_str().map(|v| v.starts_with("3.1")), Some(true));
    let mut documented = BTreeSet::new();
    for (path, item) in openapi["paths"].as_mapping().unwrap() {
        for (method, _) in item.as_mapping().unwrap() {
            let method = method.as_str().unwrap();
            if ["get", "post", "put", "patch", "delete"].contains(&method) {
                documented.insert((method.to_uppercase(), path.as_str().unwrap().to_string()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = from_template.iter().map(|(m, p, _)| (m.clone(), p.clone())).collect();
    assert_eq!(documented, routed, "docs/openapi.yaml paths differ from template.yaml routes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_resources_match_the_template() {
    let stack = TestStack::start_with_changes().await;
    let template = &stack.template;
    let described = stack.backend.dynamodb.describe_table().table_name(&stack.backend.table).send().await.unwrap();
    let table = described.table.unwrap();

    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<(String, String)> {
        schema.iter().map(|k| (k.attribute_name.clone(), k.key_type.as_str().to_string())).collect()
    };
    let template_keys = |v: &Value| -> Vec<(String, String)> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|k| (k["AttributeName"].as_str().unwrap().into(), k["KeyType"].as_str().unwrap().into()))
            .collect()
    };
    assert_eq!(keys(table.key_schema()), template_keys(&template.table["KeySchema"]));

    let attrs: BTreeSet<(String, String)> = table
        .attribute_definitions()
        .iter()
        .map(|a| (a.attribute_name.clone(), a.attribute_type.as_str().to_string()))
        .collect();
    let template_attrs: BTreeSet<(String, String)> = template.table["AttributeDefinitions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| (a["AttributeName"].as_str().unwrap().into(), a["AttributeType"].as_str().unwrap().into()))
        .collect();
    assert_eq!(attrs, template_attrs);

    let mut indexes: Vec<IndexShape> = table
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            (
                g.index_name().unwrap().to_string(),
                keys(g.key_schema()),
                g.projection().and_then(|p| p.projection_type()).map(|t| t.as_str().to_string()).unwrap(),
            )
        })
        .collect();
    indexes.sort();
    let mut template_indexes: Vec<IndexShape> = template.table["GlobalSecondaryIndexes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["IndexName"].as_str().unwrap().to_string(),
                template_keys(&g["KeySchema"]),
                g["Projection"]["ProjectionType"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    template_indexes.sort();
    assert_eq!(indexes, template_indexes);

    // The change stream the aggregator reads: enabled, with the view the template names.
    let stream = table.stream_specification().expect("the table has a stream");
    assert!(stream.stream_enabled());
    assert_eq!(
        stream.stream_view_type().map(|v| v.as_str()),
        template.table["StreamSpecification"]["StreamViewType"].as_str()
    );
    assert!(table.latest_stream_arn().is_some());

    let ttl = stack.backend.dynamodb.describe_time_to_live().table_name(&stack.backend.table).send().await.unwrap();
    assert_eq!(
        ttl.time_to_live_description.and_then(|d| d.attribute_name),
        template.table["TimeToLiveSpecification"]["AttributeName"].as_str().map(str::to_string)
    );

    for queue in &template.queues {
        let url = stack.provisioned.queue_url(&queue.logical_id).unwrap();
        let attrs = stack
            .backend
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        if let Some(seconds) = queue.visibility_timeout {
            assert_eq!(attrs[&QueueAttributeName::VisibilityTimeout], seconds.to_string());
        }
        match &queue.redrive {
            Some((target, max_receives)) => {
                let policy: serde_json::Value =
                    serde_json::from_str(&attrs[&QueueAttributeName::RedrivePolicy]).unwrap();
                assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), max_receives.to_string());
                let target_url = stack.provisioned.queue_url(target).unwrap();
                let target_arn = stack
                    .backend
                    .sqs
                    .get_queue_attributes()
                    .queue_url(target_url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .send()
                    .await
                    .unwrap()
                    .attributes
                    .unwrap()
                    .remove(&QueueAttributeName::QueueArn)
                    .unwrap();
                assert_eq!(policy["deadLetterTargetArn"], target_arn.as_str());
            }
            None => assert!(!attrs.contains_key(&QueueAttributeName::RedrivePolicy)),
        }
    }
    // Buckets: encryption, public access block and lifecycle rules as the template says.
    assert!(!template.buckets.is_empty());
    let s3 = &stack.backend.exports.s3;
    for bucket in &template.buckets {
        let name = stack.provisioned.bucket(&bucket.logical_id).unwrap();
        let block = s3.get_public_access_block().bucket(name).send().await.unwrap();
        let block = block.public_access_block_configuration.unwrap();
        let wanted = &bucket.props["PublicAccessBlockConfiguration"];
        assert_eq!(block.block_public_acls, wanted["BlockPublicAcls"].as_bool());
        assert_eq!(block.block_public_policy, wanted["BlockPublicPolicy"].as_bool());
        assert_eq!(block.ignore_public_acls, wanted["IgnorePublicAcls"].as_bool());
        assert_eq!(block.restrict_public_buckets, wanted["RestrictPublicBuckets"].as_bool());
        let encryption = s3.get_bucket_encryption().bucket(name).send().await.unwrap();
        let algorithm = encryption
            .server_side_encryption_configuration
            .and_then(|c| c.rules.into_iter().next())
            .and_then(|r| r.apply_server_side_encryption_by_default)
            .map(|d| d.sse_algorithm.as_str().to_string());
        assert_eq!(
            algorithm.as_deref(),
            bucket.props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
                ["SSEAlgorithm"]
                .as_str()
        );
        let lifecycle = s3.get_bucket_lifecycle_configuration().bucket(name).send().await.unwrap();
        let mut rules: Vec<(String, Option<i32>, Option<i32>)> = lifecycle
            .rules
            .unwrap_or_default()
            .iter()
            .map(|r| {
                (
                    r.id.clone().unwrap_or_default(),
                    r.expiration.as_ref().and_then(|e| e.days),
                    r.abort_incomplete_multipart_upload.as_ref().and_then(|a| a.days_after_initiation),
                )
            })
            .collect();
        rules.sort();
        let mut wanted: Vec<(String, Option<i32>, Option<i32>)> = bucket.props["LifecycleConfiguration"]["Rules"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["Id"].as_str().unwrap().to_string(),
                    r["ExpirationInDays"].as_i64().map(|d| d as i32),
                    r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"].as_i64().map(|d| d as i32),
                )
            })
            .collect();
        wanted.sort();
        assert_eq!(rules, wanted);
    }
}

fn template_doc() -> serde_yaml_ng::Value {
    let text = std::fs::read_to_string(argus_stack::template::repo_root().join("template.yaml")).unwrap();
    serde_yaml_ng::from_str(&text).unwrap()
}

/// Issue 11: the alarms an operator needs, with the thresholds the README promises, each wired
/// to the optional alarm topic.
#[test]
fn the_alarms_exist_with_their_thresholds() {
    let doc = template_doc();
    let resources = doc["Resources"].as_mapping().unwrap();
    let alarm = |id: &str| {
        let resource = resources.get(id).unwrap_or_else(|| panic!("no alarm {id}"));
        assert_eq!(resource["Type"].as_str(), Some("AWS::CloudWatch::Alarm"), "{id}");
        let props = resource["Properties"].clone();
        assert!(!props["AlarmActions"].is_null() && !props["OKActions"].is_null(), "{id} notifies the alarm topic");
        props
    };
    let text = |v: &serde_yaml_ng::Value| serde_yaml_ng::to_string(v).unwrap();

    let dlq = alarm("DeadLetterQueueAlarm");
    assert_eq!(dlq["MetricName"].as_str(), Some("ApproximateNumberOfMessagesVisible"));
    assert!(text(&dlq["Dimensions"]).contains("EventsDeadLetterQueue"));
    assert_eq!(
        (dlq["Threshold"].as_f64(), dlq["ComparisonOperator"].as_str()),
        (Some(0.0), Some("GreaterThanThreshold"))
    );

    let lag = alarm("ProcessingLagAlarm");
    assert_eq!(lag["MetricName"].as_str(), Some("ApproximateAgeOfOldestMessage"));
    assert!(text(&lag["Dimensions"]).contains("EventsQueue"));
    assert_eq!(lag["Threshold"].as_f64(), Some(30.0));

    let errors = alarm("EventErrorRateAlarm");
    assert_eq!(errors["Threshold"].as_f64(), Some(5.0));
    let metrics = text(&errors["Metrics"]);
    for needed in ["Namespace: Argus", "EventsStored", "EventsRejected", "Period: 300"] {
        assert!(metrics.contains(needed), "error rate alarm lacks {needed}");
    }

    let latency = alarm("ApiLatencyAlarm");
    assert_eq!(latency["ExtendedStatistic"].as_str(), Some("p95"));
    assert_eq!(latency["Threshold"].as_f64(), Some(1000.0));
    assert!(text(&latency["Dimensions"]).contains("ArgusApi"));

    let functions: Vec<&str> = resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, _)| id.as_str().unwrap())
        .collect();
    // CloudWatch takes 10 metrics per alarm: API and background functions have one alarm each.
    for metric in ["Errors", "Throttles"] {
        let ids = [format!("Function{metric}Alarm"), format!("BackgroundFunction{metric}Alarm")];
        let metrics: String = ids.iter().map(|id| text(&alarm(id)["Metrics"])).collect();
        assert_eq!(metrics.matches(&format!("MetricName: {metric}")).count(), functions.len(), "{metric}");
        for function in &functions {
            assert!(metrics.contains(function), "no {metric} alarm watches {function}");
        }
    }
    let age = alarm("AggregatorIteratorAgeAlarm");
    assert_eq!(age["MetricName"].as_str(), Some("IteratorAge"));
    let throttles = text(&alarm("DynamoDbThrottlesAlarm")["Metrics"]);
    for needed in ["ReadThrottleEvents", "WriteThrottleEvents", "ArgusTable"] {
        assert!(throttles.contains(needed), "DynamoDB throttle alarm lacks {needed}");
    }
    let index_throttles = text(&alarm("DynamoDbIndexThrottlesAlarm")["Metrics"]);
    for index in ["GSI1", "GSI2", "GSI3", "GSI4"] {
        for metric in ["ReadThrottleEvents", "WriteThrottleEvents"] {
            let pair = format!("MetricName: {metric}\n      Dimensions:\n      - Name: TableName\n        Value: !Ref ArgusTable\n      - Name: GlobalSecondaryIndexName\n        Value: {index}");
            assert!(index_throttles.contains(&pair), "index alarm lacks {metric} of {index}:\n{index_throttles}");
        }
    }
    // CloudWatch takes at most 10 metrics (and expressions) in one alarm.
    for (id, resource) in resources {
        if resource["Type"].as_str() == Some("AWS::CloudWatch::Alarm") {
            let count = resource["Properties"]["Metrics"].as_sequence().map_or(0, Vec::len);
            assert!(count <= 10, "{id:?} has {count} metric entries");
        }
    }
    assert!(resources.iter().any(|(_, r)| r["Type"].as_str() == Some("AWS::CloudWatch::Dashboard")));
}

/// Issue 11: the data outlives the stack, logs do not live forever, bursts are bounded.
#[test]
fn data_safety_and_operational_limits_are_in_the_template() {
    let doc = template_doc();
    let resources = &doc["Resources"];
    let table = &resources["ArgusTable"];
    assert_eq!(table["DeletionPolicy"].as_str(), Some("Retain"));
    assert_eq!(table["UpdateReplacePolicy"].as_str(), Some("Retain"));
    assert_eq!(table["Properties"]["DeletionProtectionEnabled"].as_bool(), Some(true));
    assert_eq!(
        table["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool(),
        Some(true)
    );
    assert_eq!(resources["EventsDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"].as_i64(), Some(14 * 86_400));
    assert!(resources["EventsQueue"]["Properties"]["MessageRetentionPeriod"].as_i64().unwrap() >= 3 * 86_400);
    assert_eq!(doc["Globals"]["Function"]["Tracing"].as_str(), Some("Active"));
    let scaling = &resources["ProcessorFunction"]["Properties"]["Events"]["Queue"]["Properties"]["ScalingConfig"];
    assert!(!scaling["MaximumConcurrency"].is_null(), "the processor's concurrency is bounded");
    let mapping = resources.as_mapping().unwrap();
    for (id, resource) in mapping {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let id = id.as_str().unwrap();
        // Its own log group (not Lambda's default /aws/lambda/<name>, which an existing stack
        // already has), with a retention.
        let reference = serde_yaml_ng::to_string(&resource["Properties"]["LoggingConfig"]["LogGroup"]).unwrap();
        let group_id = reference.trim().trim_start_matches("!Ref").trim();
        let log_group = &resources[group_id];
        assert_eq!(log_group["Type"].as_str(), Some("AWS::Logs::LogGroup"), "{id} logs to {group_id}");
        assert!(!log_group["Properties"]["RetentionInDays"].is_null());
        assert!(!serde_yaml_ng::to_string(&log_group["Properties"]["LogGroupName"]).unwrap().contains("/aws/lambda/"));
    }
    // No Lambda-side log-level filter: it would drop the EMF lines (no "level") under WARN.
    assert!(doc["Globals"]["Function"]["LoggingConfig"]["ApplicationLogLevel"].is_null());
}

/// Issue 11: `sam build` builds each function from its `BuildProperties.Binary`: each must be a
/// binary target of this workspace.
#[test]
fn every_function_binary_is_a_workspace_binary() {
    let output = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(argus_stack::template::repo_root())
        .output()
        .expect("cargo metadata");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let binaries: std::collections::HashSet<String> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    let template = argus_stack::Template::load_repo().unwrap();
    assert_eq!(template.functions.len(), 15);
    for function in &template.functions {
        assert!(
            binaries.contains(&function.binary),
            "{} builds {}, not a workspace binary",
            function.logical_id,
            function.binary
        );
    }
}
