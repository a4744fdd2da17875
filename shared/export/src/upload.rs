//! One file streamed to S3: an encoder writes into a buffer, and every [`PART_BYTES`] of it
//! goes out as one part of a multipart upload. Memory holds at most one part (plus what the
//! encoder buffers), whatever the file's size.

use argus_core::ServiceError;
use argus_models::export::{Compression, ExportFormat, ExportRow};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use crate::encode::{encoder, RowEncoder, SharedBuf};

/// Size of each part but the last. S3 requires at least 5 MiB for every part but the last,
/// and allows 10,000 parts: 80 GB per file at this size.
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// S3's smallest part (all but the last).
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;
/// S3's largest number of parts.
pub const MAX_PARTS: i32 = 10_000;

/// A file being written. The multipart upload is created with the first part: a file that
/// gets no row costs no request. An upload abandoned by a failure is never aborted here (the
/// functions hold no `s3:AbortMultipartUpload`): the bucket's lifecycle rule removes its parts
/// after a day, and nothing of it is visible meanwhile.
pub struct FileUpload {
    s3: aws_sdk_s3::Client,
    bucket: String,
    pub key: String,
    content_type: &'static str,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    encoder: Option<Box<dyn RowEncoder>>,
    sink: SharedBuf,
    pub events: u64,
    pub bytes: u64,
    part_bytes: usize,
}

fn s3_error<E>(
    operation: &str,
    err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> ServiceError
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    tracing::warn!(operation, error = %aws_sdk_s3::error::DisplayErrorContext(&err), "S3 call failed");
    ServiceError::from_sdk("s3", err)
}

impl FileUpload {
    /// A file to be written at `key` (nothing is sent until its first part is full).
    pub fn start(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        format: ExportFormat,
        compression: Compression,
    ) -> Result<Self, ServiceError> {
        Self::start_sized(s3, bucket, key, format, compression, PART_BYTES)
    }

    /// As `start`, with another part size (the archive's files are small).
    pub fn start_sized(
        s3: &aws_sdk_s3::Client,
        bucket: &str,
        key: &str,
        format: ExportFormat,
        compression: Compression,
        part_bytes: usize,
    ) -> Result<Self, ServiceError> {
        let sink = SharedBuf::default();
        let encoder = encoder(format, compression, sink.clone()).map_err(ServiceError::Internal)?;
        // Stored as the gzip file it is: a download is the .gz file, not silently inflated.
        let content_type =
            if compression == Compression::Gzip && matches!(format, ExportFormat::Ndjson | ExportFormat::Csv) {
                "application/gzip"
            } else {
                format.content_type()
            };
        Ok(Self {
            s3: s3.clone(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            content_type,
            upload_id: None,
            parts: Vec::new(),
            encoder: Some(encoder),
            sink,
            events: 0,
            bytes: 0,
            part_bytes: part_bytes.max(MIN_PART_BYTES),
        })
    }

    async fn upload_id(&mut self) -> Result<String, ServiceError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let create = self
            .s3
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type(self.content_type)
            // Every part carries its CRC32 and the completion lists them, as S3 expects of an
            // upload created with a checksum algorithm (the SDK adds CRC32 to parts anyway).
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .send();
        let created = argus_core::deadline::bounded(create).await?.map_err(|e| s3_error("CreateMultipartUpload", e))?;
        let id = created.upload_id.ok_or_else(|| ServiceError::Internal("no upload id".into()))?;
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    pub async fn push(&mut self, row: &ExportRow) -> Result<(), ServiceError> {
        let encoder = self.encoder.as_mut().ok_or_else(|| ServiceError::Internal("file already finished".into()))?;
        encoder.write_row(row).map_err(ServiceError::Internal)?;
        self.events += 1;
        if self.sink.len() >= self.part_bytes {
            let bytes = self.sink.take();
            self.upload_part(bytes).await?;
        }
        Ok(())
    }

    async fn upload_part(&mut self, bytes: Vec<u8>) -> Result<(), ServiceError> {
        let number = self.parts.len() as i32 + 1;
        if number > MAX_PARTS {
            return Err(ServiceError::Internal(format!("{} would need more than {MAX_PARTS} parts", self.key)));
        }
        let upload_id = self.upload_id().await?;
        self.bytes += bytes.len() as u64;
        let upload = self
            .s3
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .part_number(number)
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .body(ByteStream::from(bytes))
            .send();
        let out = argus_core::deadline::bounded(upload).await?.map_err(|e| s3_error("UploadPart", e))?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .set_checksum_crc32(out.checksum_crc32)
                .build(),
        );
        Ok(())
    }

    /// Writes the file's end and completes the upload: the file exists from here on.
    pub async fn finish(mut self) -> Result<FinishedFile, ServiceError> {
        // (The upload exists after the last part below, whatever the file's size.)
        let encoder = self.encoder.take().ok_or_else(|| ServiceError::Internal("file already finished".into()))?;
        encoder.finish().map_err(ServiceError::Internal)?;
        let rest = self.sink.take();
        // The last part may be smaller than 5 MiB (and the only one may be empty).
        if !rest.is_empty() || self.parts.is_empty() {
            self.upload_part(rest).await?;
        }
        let complete = self
            .s3
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(self.upload_id().await?)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(self.parts.clone())).build())
            .send();
        argus_core::deadline::bounded(complete).await?.map_err(|e| s3_error("CompleteMultipartUpload", e))?;
        Ok(FinishedFile { key: self.key.clone(), events: self.events, bytes: self.bytes })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedFile {
    pub key: String,
    pub events: u64,
    pub bytes: u64,
}
