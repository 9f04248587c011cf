//! The S3 store (aws-sdk-s3), for AWS and S3-compatible servers (MinIO,
//! Ceph, R2, s3s, moto). Configuration comes the AWS way: the standard
//! credential chain (environment, profile, instance metadata) through
//! aws-config; region from `--s3-region` or `AWS_REGION`; a custom
//! endpoint (`--s3-endpoint` / `AWS_ENDPOINT_URL`) and path-style
//! addressing for S3-compatible servers.
//!
//! Integrity: every put carries a checksum the server verifies (the SDK's
//! default CRC32, or per part for multipart), every get asks for the
//! checksum back and the SDK validates it; zstd's frame checksum and the
//! catalog's content hashes sit on top. `PutMode::Create` uses `If-None-Match: *`
//! so an existing object is never replaced. A put returns only after the
//! server confirmed it. Throttling and transient failures are retried by
//! the SDK's standard retry strategy (exponential backoff with jitter);
//! what still fails becomes `StoreError::Remote` naming bucket, key and the
//! server's answer. Credentials never appear in errors or logs: messages
//! are built from the server's code, message and HTTP status only.

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    ChecksumMode, CompletedMultipartUpload, CompletedPart, Delete, ObjectIdentifier,
};
use aws_sdk_s3::Client;
use tokio::io::AsyncReadExt;
use tokio::task::JoinSet;

use super::{ObjectKey, ObjectMeta, ObjectReader, PutMode, Store, StoreError};

/// Multipart part size: bounded memory per upload is
/// `PART_SIZE * (PARTS_IN_FLIGHT + 1)`.
pub const PART_SIZE: usize = 8 << 20;
pub const PARTS_IN_FLIGHT: usize = 4;

/// How to reach the bucket, beyond what aws-config finds by itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3Settings {
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub path_style: bool,
}

impl S3Settings {
    /// The pitr flags that give another pitr process these settings (for
    /// restore_command and the WAL prefetcher); empty when none are set.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(r) = &self.region {
            args.extend(["--s3-region".to_string(), r.clone()]);
        }
        if let Some(e) = &self.endpoint {
            args.extend(["--s3-endpoint".to_string(), e.clone()]);
        }
        if self.path_style {
            args.push("--s3-path-style".to_string());
        }
        args
    }
}

#[derive(Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Key prefix without a trailing slash ("" for the bucket's root).
    prefix: String,
    endpoint: Option<String>,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl S3Store {
    pub async fn connect(bucket: &str, prefix: &str, settings: &S3Settings) -> S3Store {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(r) = &settings.region {
            loader = loader.region(Region::new(r.clone()));
        }
        let sdk = loader.load().await;
        let mut conf = aws_sdk_s3::config::Builder::from(&sdk)
            .retry_config(RetryConfig::standard().with_max_attempts(6))
            .force_path_style(settings.path_style);
        if sdk.region().is_none() {
            // S3 needs a region to sign; us-east-1 is what S3-compatible
            // servers expect when none is configured.
            conf = conf.region(Region::new("us-east-1"));
        }
        if let Some(e) = &settings.endpoint {
            conf = conf.endpoint_url(e.clone());
        }
        let endpoint = settings
            .endpoint
            .clone()
            .or_else(|| sdk.endpoint_url().map(str::to_string));
        S3Store {
            client: Client::from_conf(conf.build()),
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint,
        }
    }

    /// A store over an already configured client (tests, embedding).
    pub fn from_client(client: Client, bucket: &str, prefix: &str) -> S3Store {
        S3Store {
            client,
            bucket: bucket.to_string(),
            prefix: prefix.trim_matches('/').to_string(),
            endpoint: None,
        }
    }

    fn full_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    fn target(&self, key: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.full_key(key))
    }

    /// Turns an SDK error into a StoreError with bucket, key and what the
    /// server said (never request headers or credentials).
    fn remote<E>(&self, op: &'static str, key: &str, err: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let (code, message) = match &err {
            SdkError::ServiceError(se) => (
                se.err().code().map(str::to_string),
                se.err().message().map(str::to_string).unwrap_or_default(),
            ),
            other => (None, DisplayErrorContext(other).to_string()),
        };
        let retryable = match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => true,
            _ => status.is_some_and(|s| s >= 500 || s == 429),
        };
        let hint = match (code.as_deref(), status) {
            (Some("NoSuchBucket"), _) => format!(" (bucket {} does not exist: create it, or fix --repo)", self.bucket),
            (Some("SignatureDoesNotMatch" | "InvalidAccessKeyId" | "NotSignedUp" | "AccessDenied"), _)
            | (_, Some(403)) => " (check the AWS credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or the instance role)".to_string(),
            _ => String::new(),
        };
        StoreError::Remote {
            op,
            target: self.target(key),
            code,
            status,
            message: format!("{message}{hint}"),
            retryable,
        }
    }

    async fn put_bytes(
        &self,
        key: &ObjectKey,
        data: Vec<u8>,
        mode: PutMode,
    ) -> Result<(), StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .body(ByteStream::from(data));
        if mode == PutMode::Create {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                if mode == PutMode::Create && is_precondition_failed(&e) {
                    return Err(StoreError::AlreadyExists(key.clone()));
                }
                Err(self.remote("put", key.as_str(), e))
            }
        }
    }

    async fn multipart(
        &self,
        key: &ObjectKey,
        first: Vec<u8>,
        mut reader: ObjectReader,
        mode: PutMode,
    ) -> Result<u64, StoreError> {
        let full = self.full_key(key.as_str());
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.remote("create multipart upload", key.as_str(), e))?;
        let Some(upload_id) = created.upload_id().map(str::to_string) else {
            return Err(StoreError::Remote {
                op: "create multipart upload",
                target: self.target(key.as_str()),
                code: None,
                status: None,
                message: "the server returned no upload id".into(),
                retryable: false,
            });
        };
        let result = self.upload_parts(key, &upload_id, first, &mut reader).await;
        let (parts, total) = match result {
            Ok(v) => v,
            Err(e) => {
                self.abort_upload(&full, &upload_id).await;
                return Err(e);
            }
        };
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if mode == PutMode::Create {
            req = req.if_none_match("*");
        }
        if let Err(e) = req.send().await {
            self.abort_upload(&full, &upload_id).await;
            if mode == PutMode::Create && is_precondition_failed(&e) {
                return Err(StoreError::AlreadyExists(key.clone()));
            }
            return Err(self.remote("complete multipart upload", key.as_str(), e));
        }
        Ok(total)
    }

    /// Best effort: an upload left behind costs storage, not correctness
    /// (a lifecycle rule for incomplete uploads cleans those up).
    async fn abort_upload(&self, full: &str, upload_id: &str) {
        let _ = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(full)
            .upload_id(upload_id)
            .send()
            .await;
    }

    async fn upload_parts(
        &self,
        key: &ObjectKey,
        upload_id: &str,
        first: Vec<u8>,
        reader: &mut ObjectReader,
    ) -> Result<(Vec<CompletedPart>, u64), StoreError> {
        let full = self.full_key(key.as_str());
        let mut set: JoinSet<Result<CompletedPart, StoreError>> = JoinSet::new();
        let mut parts = Vec::new();
        let mut total = 0u64;
        let mut next = Some(first);
        let mut number = 0i32;
        loop {
            let buf = match next.take() {
                Some(b) => b,
                None => read_part(reader).await.map_err(|source| StoreError::Io {
                    op: "read upload source",
                    path: self.target(key.as_str()),
                    source,
                })?,
            };
            if buf.is_empty() {
                break;
            }
            let last = buf.len() < PART_SIZE;
            total += buf.len() as u64;
            number += 1;
            while set.len() >= PARTS_IN_FLIGHT {
                if let Some(done) = set.join_next().await {
                    parts.push(joined(done)?);
                }
            }
            let this = self.clone();
            let full = full.clone();
            let upload_id = upload_id.to_string();
            let key = key.clone();
            set.spawn(async move {
                let out = this
                    .client
                    .upload_part()
                    .bucket(&this.bucket)
                    .key(&full)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(buf))
                    .send()
                    .await
                    .map_err(|e| this.remote("upload part", key.as_str(), e))?;
                Ok(CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build())
            });
            if last {
                break;
            }
        }
        while let Some(done) = set.join_next().await {
            parts.push(joined(done)?);
        }
        parts.sort_by_key(|p| p.part_number());
        Ok((parts, total))
    }
}

fn joined<T>(r: Result<Result<T, StoreError>, tokio::task::JoinError>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Io {
        op: "background upload",
        path: String::new(),
        source: std::io::Error::other(e.to_string()),
    })?
}

/// Reads up to PART_SIZE bytes (less only at the end of the stream).
async fn read_part(reader: &mut ObjectReader) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; PART_SIZE];
    let mut filled = 0;
    while filled < PART_SIZE {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

fn is_precondition_failed<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.as_service_error().and_then(|s| s.code());
    status == Some(412) || code == Some("PreconditionFailed")
}

#[async_trait]
impl Store for S3Store {
    fn describe(&self) -> String {
        let base = if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        };
        match &self.endpoint {
            Some(e) => format!("{base} at {e}"),
            None => base,
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => {
                Err(StoreError::Remote {
                    op: "open bucket",
                    target: format!("s3://{}", self.bucket),
                    code: Some("NoSuchBucket".into()),
                    status: Some(404),
                    message: format!(
                        "bucket {} does not exist: create it first, or fix --repo",
                        self.bucket
                    ),
                    retryable: false,
                })
            }
            Err(e) => Err(self.remote("open bucket", "", e)),
        }
    }

    async fn put(&self, key: &ObjectKey, data: &[u8], mode: PutMode) -> Result<(), StoreError> {
        self.put_bytes(key, data.to_vec(), mode).await
    }

    async fn put_reader(
        &self,
        key: &ObjectKey,
        mut reader: ObjectReader,
        mode: PutMode,
    ) -> Result<u64, StoreError> {
        let first = read_part(&mut reader)
            .await
            .map_err(|source| StoreError::Io {
                op: "read upload source",
                path: self.target(key.as_str()),
                source,
            })?;
        if first.len() < PART_SIZE {
            let n = first.len() as u64;
            self.put_bytes(key, first, mode).await?;
            return Ok(n);
        }
        self.multipart(key, first, reader, mode).await
    }

    async fn get(&self, key: &ObjectKey) -> Result<Vec<u8>, StoreError> {
        let mut body = self.open_read(key).await?;
        let mut out = Vec::new();
        // The SDK validates the checksum as the stream ends.
        body.read_to_end(&mut out)
            .await
            .map_err(|e| StoreError::Remote {
                op: "get",
                target: self.target(key.as_str()),
                code: None,
                status: None,
                message: e.to_string(),
                retryable: true,
            })?;
        Ok(out)
    }

    async fn open_read(&self, key: &ObjectKey) -> Result<ObjectReader, StoreError> {
        let resp = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        match resp {
            Ok(r) => Ok(Box::new(r.body.into_async_read())),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => {
                Err(StoreError::NotFound(key.clone()))
            }
            Err(e) => Err(self.remote("get", key.as_str(), e)),
        }
    }

    async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StoreError> {
        let resp = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await;
        match resp {
            Ok(r) => Ok(Some(ObjectMeta {
                key: key.clone(),
                size: r.content_length().unwrap_or(0).max(0) as u64,
            })),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(self.remote("head", key.as_str(), e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        // An empty prefix is the whole repository (as in every store).
        let under = prefix.trim_matches('/');
        let want = if under.is_empty() {
            strip.clone()
        } else {
            format!("{}/", self.full_key(under))
        };
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&want)
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.remote("list", prefix, e))?;
            for obj in page.contents() {
                let Some(k) = obj.key() else { continue };
                let Some(rel) = k.strip_prefix(&strip) else {
                    continue;
                };
                if let Ok(key) = ObjectKey::new(rel) {
                    out.push(ObjectMeta {
                        key,
                        size: obj.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full_key(key.as_str()))
            .send()
            .await
            .map_err(|e| self.remote("delete", key.as_str(), e))?;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let keys = self.list(prefix).await?;
        for chunk in keys.chunks(1000) {
            let ids: Vec<ObjectIdentifier> = chunk
                .iter()
                .filter_map(|m| {
                    ObjectIdentifier::builder()
                        .key(self.full_key(m.key.as_str()))
                        .build()
                        .ok()
                })
                .collect();
            let delete = Delete::builder()
                .set_objects(Some(ids))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::Remote {
                    op: "delete",
                    target: self.target(prefix),
                    code: None,
                    status: None,
                    message: e.to_string(),
                    retryable: false,
                })?;
            self.client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.remote("delete", prefix, e))?;
        }
        Ok(())
    }
}
