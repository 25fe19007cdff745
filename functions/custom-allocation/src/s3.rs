//! Module storage in S3 (the template's policy bucket, `POLICY_BUCKET`), with the same keys as the data
//! directory. The registration path only reads (s3:GetObject); uploads, deletes and listings need the service
//! function's s3:PutObject, s3:DeleteObject and s3:ListBucket.

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use dps_core::policy::PolicyInfo;
use dps_core::{Error, Result};

use crate::storage::{ModuleStorage, decode_info, encode_info, module_key, policies_prefix, policy_key};

/// Modules and policy metadata in one S3 bucket.
pub struct S3Storage {
    client: Client,
    bucket: String,
}

impl S3Storage {
    /// Storage in `bucket` through `client`.
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    /// A client from the environment's AWS configuration with rustls (ring); `endpoint_url` (e.g. a local S3
    /// emulator) switches to path-style addressing.
    pub async fn from_env(bucket: impl Into<String>, endpoint_url: Option<String>) -> Self {
        let shared =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http_client()).load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared);
        if let Some(url) = endpoint_url {
            config = config.endpoint_url(url).force_path_style(true);
        }
        Self::new(Client::from_conf(config.build()), bucket)
    }

    /// Storage against an S3-compatible emulator (e.g. moto) at `endpoint`: static dummy credentials,
    /// `us-east-1`, path-style addressing.
    pub fn for_emulator(endpoint: &str, bucket: impl Into<String>) -> Self {
        let config = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("test", "test", None, None, "emulator"))
            .http_client(http_client())
            .endpoint_url(endpoint)
            .force_path_style(true)
            .build();
        Self::new(Client::from_conf(config), bucket)
    }

    /// Create the bucket (for emulators and first-run setup; the SAM template creates it on AWS).
    pub async fn create_bucket(&self) -> Result<()> {
        self.client.create_bucket().bucket(&self.bucket).send().await.map_err(|e| unavailable(&self.bucket, &e))?;
        Ok(())
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let bytes = out.body.collect().await.map_err(|e| unavailable(key, &e))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => Ok(None),
            Err(e) if e.code() == Some("NoSuchKey") || e.code() == Some("NotFound") => Ok(None),
            Err(e) => Err(unavailable(key, &e)),
        }
    }

    async fn write(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> Result<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| unavailable(key, &e))?;
        Ok(())
    }
}

/// HTTPS client with rustls and ring (no aws-lc), as the DynamoDB store uses.
fn http_client() -> aws_sdk_s3::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

fn unavailable(key: &str, e: &dyn std::fmt::Display) -> Error {
    Error::Unavailable(format!("policy storage ({key}): {e}"))
}

#[async_trait]
impl ModuleStorage for S3Storage {
    async fn put_module(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        // Content-addressed: rewriting the same key with the same bytes is harmless, so no existence check.
        self.write(&module_key(sha256), bytes.to_vec(), "application/wasm").await
    }

    async fn get_module(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        self.read(&module_key(sha256)).await
    }

    async fn put_policy(&self, scope: &str, info: &PolicyInfo) -> Result<()> {
        self.write(&policy_key(scope, &info.name), encode_info(info)?, "application/json").await
    }

    async fn get_policy(&self, scope: &str, name: &str) -> Result<Option<PolicyInfo>> {
        self.read(&policy_key(scope, name)).await?.map(|b| decode_info(&b)).transpose()
    }

    async fn list_policies(&self, scope: &str) -> Result<Vec<PolicyInfo>> {
        let prefix = policies_prefix(scope);
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&prefix).into_paginator().send();
        let mut all = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| unavailable(&prefix, &e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                if let Some(bytes) = self.read(key).await? {
                    all.push(decode_info(&bytes)?);
                }
            }
        }
        all.sort_by_key(|a| a.name.to_ascii_lowercase());
        Ok(all)
    }

    async fn delete_policy(&self, scope: &str, name: &str) -> Result<bool> {
        let key = policy_key(scope, name);
        let existed = self.read(&key).await?.is_some();
        if existed {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| unavailable(&key, &e))?;
        }
        Ok(existed)
    }
}
