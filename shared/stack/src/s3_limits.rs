//! S3's multipart rules, locally. The local S3 (ministack) completes an upload whatever its
//! parts' sizes; S3 refuses `CompleteMultipartUpload` with `EntityTooSmall` when any part but
//! the last is under 5 MiB, and allows at most 10,000 parts. This interceptor, on every
//! function's S3 client, remembers each part's size and refuses the completion as S3 would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

pub const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
pub const MAX_PARTS: i64 = 10_000;

/// Upload id → part number → size.
#[derive(Debug, Clone, Default)]
pub struct S3PartGuard {
    parts: Arc<Mutex<HashMap<String, HashMap<i64, u64>>>>,
}

fn query_param<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    let query = uri.split_once('?')?.1;
    query.split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

/// Why S3 would refuse to complete an upload with these part sizes, if it would.
pub fn completion_error(parts: &HashMap<i64, u64>) -> Option<String> {
    let last = *parts.keys().max()?;
    if last > MAX_PARTS {
        return Some(format!("InvalidArgument: part number {last} is over {MAX_PARTS}"));
    }
    let small: Vec<String> = parts
        .iter()
        .filter(|(number, size)| **number != last && **size < MIN_PART_BYTES)
        .map(|(number, size)| format!("part {number} ({size} bytes)"))
        .collect();
    (!small.is_empty())
        .then(|| format!("EntityTooSmall: every part but the last must be at least 5 MiB: {}", small.join(", ")))
}

impl Intercept for S3PartGuard {
    fn name(&self) -> &'static str {
        "S3PartGuard"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(metadata) = cfg.load::<Metadata>() else { return Ok(()) };
        if !metadata.service().eq_ignore_ascii_case("s3") {
            return Ok(());
        }
        let request = context.request();
        let uri = request.uri().to_string();
        let Some(upload_id) = query_param(&uri, "uploadId").map(str::to_string) else { return Ok(()) };
        let Ok(mut uploads) = self.parts.lock() else { return Ok(()) };
        match metadata.name() {
            "UploadPart" => {
                let number = query_param(&uri, "partNumber").and_then(|n| n.parse().ok()).unwrap_or(0);
                let size = request.body().content_length().unwrap_or(0);
                uploads.entry(upload_id).or_default().insert(number, size);
            }
            "CompleteMultipartUpload" => {
                if let Some(error) = uploads.get(&upload_id).and_then(completion_error) {
                    tracing::error!(%error, "S3 would refuse this upload");
                    return Err(error.into());
                }
                uploads.remove(&upload_id);
            }
            "AbortMultipartUpload" => {
                uploads.remove(&upload_id);
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_part_may_be_small() {
        let mib = 1024 * 1024;
        assert_eq!(completion_error(&HashMap::from([(1, 10)])), None, "one small part is a whole file");
        assert_eq!(completion_error(&HashMap::from([(1, 8 * mib), (2, 10)])), None);
        let error = completion_error(&HashMap::from([(1, 4 * mib), (2, 8 * mib), (3, 1)])).unwrap();
        assert!(error.starts_with("EntityTooSmall") && error.contains("part 1"), "{error}");
        assert!(completion_error(&HashMap::from([(10_001, 1)])).is_some());
        assert_eq!(query_param("/b/k?partNumber=3&uploadId=abc", "uploadId"), Some("abc"));
    }
}
