//! Dependency health: can we reach the table and the queue right now?

use std::time::Duration;

use serde::Serialize;

use crate::Backend;

const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Healthy,
    Unhealthy,
}

#[derive(Debug, Serialize)]
pub struct Components {
    pub dynamodb: Status,
    pub queue: Status,
}

impl Components {
    pub fn all_healthy(&self) -> bool {
        self.dynamodb == Status::Healthy && self.queue == Status::Healthy
    }
}

/// Checks both dependencies concurrently, each bounded by a timeout so a hung endpoint reports
/// unhealthy instead of hanging the health check.
pub async fn check(backend: &Backend) -> Components {
    let dynamodb = async {
        let call = backend.dynamodb.describe_table().table_name(&backend.table).send();
        match tokio::time::timeout(CHECK_TIMEOUT, call).await {
            Ok(Ok(_)) => Status::Healthy,
            Ok(Err(err)) => {
                tracing::warn!(error = %aws_sdk_dynamodb::error::DisplayErrorContext(&err), "dynamodb health check failed");
                Status::Unhealthy
            }
            Err(_) => Status::Unhealthy,
        }
    };
    let queue = async {
        let call = backend
            .sqs
            .get_queue_attributes()
            .queue_url(&backend.queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            .send();
        match tokio::time::timeout(CHECK_TIMEOUT, call).await {
            Ok(Ok(_)) => Status::Healthy,
            Ok(Err(err)) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&err), "sqs health check failed");
                Status::Unhealthy
            }
            Err(_) => Status::Unhealthy,
        }
    };
    let (dynamodb, queue) = tokio::join!(dynamodb, queue);
    Components { dynamodb, queue }
}
