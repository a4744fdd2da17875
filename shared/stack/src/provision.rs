//! Creates template.yaml's table and queues on DynamoDB Local and the SQS endpoint.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml_ng::Value;

use crate::template::Template;

#[derive(Debug, Clone)]
pub struct Provisioned {
    pub table: String,
    /// Queue logical id → URL.
    pub queue_urls: BTreeMap<String, String>,
    /// Bucket logical id → bucket name.
    pub buckets: BTreeMap<String, String>,
}

impl Provisioned {
    pub fn bucket(&self, logical_id: &str) -> Result<&str, String> {
        self.buckets.get(logical_id).map(String::as_str).ok_or_else(|| format!("no bucket {logical_id}"))
    }

    pub fn queue_url(&self, logical_id: &str) -> Result<&str, String> {
        self.queue_urls.get(logical_id).map(String::as_str).ok_or_else(|| format!("no queue {logical_id}"))
    }
}

/// Creates the table `table_name`, one queue per template queue, named
/// `<queue_prefix>-<LogicalId>`, and one bucket per template bucket, named
/// `<queue_prefix>-<logicalid>` in lower case, with the template's encryption, public access
/// block and lifecycle rules. Existing ones are kept (safe to run on every start).
pub async fn provision(
    dynamodb: &aws_sdk_dynamodb::Client,
    sqs: &aws_sdk_sqs::Client,
    s3: &aws_sdk_s3::Client,
    template: &Template,
    table_name: &str,
    queue_prefix: &str,
) -> Result<Provisioned, String> {
    create_table(dynamodb, &template.table, table_name).await?;
    let mut queue_urls = BTreeMap::new();
    // Dead-letter queues first: a redrive policy names its target's ARN.
    let mut ordered = template.queues.clone();
    ordered.sort_by_key(|q| q.redrive.is_some());
    for queue in &ordered {
        let mut create = sqs.create_queue().queue_name(format!("{queue_prefix}-{}", queue.logical_id));
        if let Some(seconds) = queue.visibility_timeout {
            create = create.attributes(QueueAttributeName::VisibilityTimeout, seconds.to_string());
        }
        if let Some(seconds) = queue.retention_seconds {
            create = create.attributes(QueueAttributeName::MessageRetentionPeriod, seconds.to_string());
        }
        if let Some((target, max_receives)) = &queue.redrive {
            let target_url = queue_urls.get(target).ok_or_else(|| format!("redrive target {target} is not a queue"))?;
            let arn = sqs
                .get_queue_attributes()
                .queue_url(target_url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .map_err(|e| format!("reading {target}'s ARN: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))?
                .attributes
                .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
                .ok_or("queue without an ARN")?;
            let policy = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives});
            create = create.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let url = create
            .send()
            .await
            .map_err(|e| {
                format!("creating queue {}: {}", queue.logical_id, aws_sdk_sqs::error::DisplayErrorContext(&e))
            })?
            .queue_url
            .ok_or("CreateQueue returned no URL")?;
        queue_urls.insert(queue.logical_id.clone(), url);
    }
    let mut buckets = BTreeMap::new();
    for bucket in &template.buckets {
        let name = format!("{queue_prefix}-{}", bucket.logical_id).to_ascii_lowercase();
        create_bucket(s3, &name, &bucket.props).await.map_err(|e| format!("bucket {}: {e}", bucket.logical_id))?;
        buckets.insert(bucket.logical_id.clone(), name);
    }
    Ok(Provisioned { table: table_name.to_string(), queue_urls, buckets })
}

async fn create_table(client: &aws_sdk_dynamodb::Client, props: &Value, table_name: &str) -> Result<(), String> {
    let mut create = client.create_table().table_name(table_name);
    for def in seq(props, "AttributeDefinitions")? {
        let kind = match text(def, "AttributeType")? {
            "S" => ScalarAttributeType::S,
            "N" => ScalarAttributeType::N,
            "B" => ScalarAttributeType::B,
            other => return Err(format!("attribute type {other}")),
        };
        create = create.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(text(def, "AttributeName")?)
                .attribute_type(kind)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    create = create.set_key_schema(Some(key_schema(props)?));
    if let Some(Value::Sequence(indexes)) = props.get("GlobalSecondaryIndexes") {
        for index in indexes {
            let projection = index.get("Projection").ok_or("GSI without Projection")?;
            let projection = Projection::builder()
                .projection_type(ProjectionType::from(text(projection, "ProjectionType")?))
                .set_non_key_attributes(
                    projection
                        .get("NonKeyAttributes")
                        .and_then(Value::as_sequence)
                        .map(|attrs| attrs.iter().filter_map(Value::as_str).map(str::to_string).collect()),
                )
                .build();
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(text(index, "IndexName")?)
                    .set_key_schema(Some(key_schema(index)?))
                    .projection(projection)
                    .build()
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    if let Some(stream) = props.get("StreamSpecification") {
        create = create.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(text(stream, "StreamViewType")?))
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    match props.get("BillingMode").and_then(Value::as_str) {
        Some("PAY_PER_REQUEST") => create = create.billing_mode(BillingMode::PayPerRequest),
        other => return Err(format!("unsupported BillingMode {other:?}: the local stack mirrors on-demand tables")),
    }
    match create.send().await {
        Ok(_) => {}
        Err(err) if err.as_service_error().map(|e| e.is_resource_in_use_exception()).unwrap_or(false) => return Ok(()),
        Err(err) => return Err(format!("creating table: {}", aws_sdk_dynamodb::error::DisplayErrorContext(&err))),
    }
    if let Some(ttl) = props.get("TimeToLiveSpecification") {
        client
            .update_time_to_live()
            .table_name(table_name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(text(ttl, "AttributeName")?)
                    .enabled(ttl.get("Enabled").and_then(Value::as_bool).unwrap_or(false))
                    .build()
                    .map_err(|e| e.to_string())?,
            )
            .send()
            .await
            .map_err(|e| format!("enabling TTL: {}", aws_sdk_dynamodb::error::DisplayErrorContext(&e)))?;
    }
    Ok(())
}

fn key_schema(props: &Value) -> Result<Vec<KeySchemaElement>, String> {
    seq(props, "KeySchema")?
        .iter()
        .map(|k| {
            let kind = match text(k, "KeyType")? {
                "HASH" => KeyType::Hash,
                "RANGE" => KeyType::Range,
                other => return Err(format!("key type {other}")),
            };
            KeySchemaElement::builder()
                .attribute_name(text(k, "AttributeName")?)
                .key_type(kind)
                .build()
                .map_err(|e| e.to_string())
        })
        .collect()
}

fn seq<'a>(value: &'a Value, name: &str) -> Result<&'a Vec<Value>, String> {
    value.get(name).and_then(Value::as_sequence).ok_or_else(|| format!("table property {name} missing"))
}

fn text<'a>(value: &'a Value, name: &str) -> Result<&'a str, String> {
    value.get(name).and_then(Value::as_str).ok_or_else(|| format!("property {name} missing"))
}

async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str, props: &Value) -> Result<(), String> {
    use aws_sdk_s3::types::{
        AbortIncompleteMultipartUpload, BucketLifecycleConfiguration, ExpirationStatus, LifecycleExpiration,
        LifecycleRule, LifecycleRuleFilter, PublicAccessBlockConfiguration, ServerSideEncryption,
        ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Transition,
        TransitionStorageClass,
    };
    let shown = |e: &dyn std::fmt::Display| e.to_string();
    match s3.create_bucket().bucket(name).send().await {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()) => {}
        Err(err) => return Err(format!("creating: {}", aws_sdk_s3::error::DisplayErrorContext(&err))),
    }
    if let Some(block) = props.get("PublicAccessBlockConfiguration") {
        let flag = |name: &str| block.get(name).and_then(Value::as_bool).unwrap_or(false);
        s3.put_public_access_block()
            .bucket(name)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(flag("BlockPublicAcls"))
                    .block_public_policy(flag("BlockPublicPolicy"))
                    .ignore_public_acls(flag("IgnorePublicAcls"))
                    .restrict_public_buckets(flag("RestrictPublicBuckets"))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| format!("public access block: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    }
    let encryption = props
        .get("BucketEncryption")
        .and_then(|e| e.get("ServerSideEncryptionConfiguration"))
        .and_then(Value::as_sequence)
        .and_then(|rules| rules.first())
        .and_then(|rule| rule.get("ServerSideEncryptionByDefault"))
        .and_then(|d| d.get("SSEAlgorithm"))
        .and_then(Value::as_str);
    if let Some(algorithm) = encryption {
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::from(algorithm))
            .build()
            .map_err(|e| shown(&e))?;
        let configuration = ServerSideEncryptionConfiguration::builder()
            .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(by_default).build())
            .build()
            .map_err(|e| shown(&e))?;
        s3.put_bucket_encryption()
            .bucket(name)
            .server_side_encryption_configuration(configuration)
            .send()
            .await
            .map_err(|e| format!("encryption: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    }
    let rules = props
        .get("LifecycleConfiguration")
        .and_then(|l| l.get("Rules"))
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    if !rules.is_empty() {
        let mut lifecycle = BucketLifecycleConfiguration::builder();
        for rule in &rules {
            let days = |v: Option<&Value>| v.and_then(Value::as_i64).map(|d| d as i32);
            let mut built = LifecycleRule::builder()
                .id(text(rule, "Id")?)
                .status(if text(rule, "Status")? == "Enabled" {
                    ExpirationStatus::Enabled
                } else {
                    ExpirationStatus::Disabled
                })
                .filter(
                    LifecycleRuleFilter::builder()
                        .prefix(rule.get("Prefix").and_then(Value::as_str).unwrap_or(""))
                        .build(),
                );
            if let Some(days) = days(rule.get("ExpirationInDays")) {
                built = built.expiration(LifecycleExpiration::builder().days(days).build());
            }
            if let Some(days) =
                days(rule.get("AbortIncompleteMultipartUpload").and_then(|a| a.get("DaysAfterInitiation")))
            {
                built = built.abort_incomplete_multipart_upload(
                    AbortIncompleteMultipartUpload::builder().days_after_initiation(days).build(),
                );
            }
            for transition in rule.get("Transitions").and_then(Value::as_sequence).into_iter().flatten() {
                built = built.transitions(
                    Transition::builder()
                        .set_days(days(transition.get("TransitionInDays")))
                        .storage_class(TransitionStorageClass::from(text(transition, "StorageClass")?))
                        .build(),
                );
            }
            lifecycle = lifecycle.rules(built.build().map_err(|e| shown(&e))?);
        }
        s3.put_bucket_lifecycle_configuration()
            .bucket(name)
            .lifecycle_configuration(lifecycle.build().map_err(|e| shown(&e))?)
            .send()
            .await
            .map_err(|e| format!("lifecycle: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    }
    Ok(())
}
