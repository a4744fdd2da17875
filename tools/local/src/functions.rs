//! One backend per function of the template, as in AWS where each function has its own role:
//! its clients carry the IAM guard built from the function's policy, so a call the policy does
//! not allow fails locally as it would in AWS, and every call is recorded for the IAM contract.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use argus_core::Backend;
use argus_stack::iam::{IamGuard, ResourceNames};
use argus_stack::template::FunctionSpec;
use argus_stack::{Provisioned, Template};

#[derive(Debug, Clone)]
pub struct Function {
    pub spec: FunctionSpec,
    pub backend: Backend,
}

impl Function {
    /// The function's `Timeout`: its handler's deadline in the runner.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.spec.timeout_seconds)
    }
}

#[derive(Debug, Clone)]
pub struct Functions {
    by_binary: BTreeMap<String, Function>,
}

impl Functions {
    pub fn new(backend: &Backend, template: &Template, provisioned: &Provisioned) -> Self {
        let names = Arc::new(
            ResourceNames::new(&provisioned.table, &template.table_id, &provisioned.queue_urls)
                .with_buckets(&provisioned.buckets),
        );
        let by_binary = template
            .functions
            .iter()
            .map(|spec| {
                let guard = IamGuard::new(spec, names.clone());
                let mut function_backend = backend.clone();
                function_backend.dynamodb = aws_sdk_dynamodb::Client::from_conf(
                    backend.dynamodb.config().to_builder().interceptor(guard.clone()).build(),
                );
                function_backend.sqs = aws_sdk_sqs::Client::from_conf(
                    backend.sqs.config().to_builder().interceptor(guard.clone()).build(),
                );
                function_backend.exports.s3 =
                    aws_sdk_s3::Client::from_conf(backend.exports.s3.config().to_builder().interceptor(guard).build());
                (spec.binary.clone(), Function { spec: spec.clone(), backend: function_backend })
            })
            .collect();
        Self { by_binary }
    }

    pub fn get(&self, binary: &str) -> Option<&Function> {
        self.by_binary.get(binary)
    }

    pub fn function(&self, binary: &str) -> Result<&Function, String> {
        self.get(binary).ok_or_else(|| format!("template.yaml defines no function {binary}"))
    }
}
