//! Hub connector credentials sealed with the deployment's KMS key (`DPS_SECRETS_KMS_KEY`, the template's
//! `HubSecretsKey`): the service function encrypts what an operator links, the device function decrypts it
//! when a registration reaches the hub, and keeps what it opened for the life of the warm instance.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::primitives::Blob;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dps_core::hubs::SecretBox;
use dps_core::{Error, Result};

/// Prefix of what [`KmsSecretBox`] seals (another scheme, such as the local binary's `aes256gcm:`, can follow).
const PREFIX: &str = "kms:";

/// The encryption context bound to every ciphertext; the template's IAM conditions require it, so the key
/// cannot be used by these roles to decrypt anything else.
pub const CONTEXT_KEY: &str = "purpose";
/// The context value.
pub const CONTEXT_VALUE: &str = "dps-hub-credentials";

/// Opened credentials kept per warm instance, at most this many (a deployment links a handful of hubs).
const CACHE_ENTRIES: usize = 256;

/// Seals with KMS Encrypt under one key and opens with KMS Decrypt: `kms:` + base64 of the ciphertext blob.
pub struct KmsSecretBox {
    client: Client,
    key_id: String,
    opened: Mutex<HashMap<String, String>>,
}

impl KmsSecretBox {
    /// A box over `key_id` (an ID, ARN or alias) through `client`.
    pub fn new(client: Client, key_id: impl Into<String>) -> Self {
        Self { client, key_id: key_id.into(), opened: Mutex::new(HashMap::new()) }
    }

    /// The function's box, when `DPS_SECRETS_KMS_KEY` is set: a KMS client from the function's shared SDK
    /// configuration `sdk` (its credentials, region, HTTP client, retries and timeouts), with `DPS_KMS_ENDPOINT`
    /// as its endpoint when set (an emulator) and never the store's endpoint override.
    pub fn from_config(config: &crate::FunctionConfig, sdk: &aws_config::SdkConfig) -> Option<Self> {
        let key_id = config.secrets_kms_key.clone()?;
        let mut kms = aws_sdk_kms::config::Builder::from(sdk);
        kms.set_endpoint_url(config.kms_endpoint.clone());
        Some(Self::new(Client::from_conf(kms.build()), key_id))
    }
}

/// A KMS call that failed, as the error of `action` (`seal`, `open`), with the SDK's whole error chain.
fn kms_failed(action: &str, err: &(dyn std::error::Error + 'static)) -> Error {
    Error::internal(format!("cannot {action} hub credentials with KMS: {}", DisplayErrorContext(err)))
}

#[async_trait]
impl SecretBox for KmsSecretBox {
    async fn seal(&self, plaintext: &str) -> Result<String> {
        let sealed = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(plaintext.as_bytes()))
            .encryption_context(CONTEXT_KEY, CONTEXT_VALUE)
            .send()
            .await
            .map_err(|e| kms_failed("seal", &e))?;
        let blob = sealed.ciphertext_blob().ok_or_else(|| Error::internal("KMS Encrypt returned no ciphertext"))?;
        Ok(format!("{PREFIX}{}", STANDARD.encode(blob.as_ref())))
    }

    async fn open(&self, sealed: &str) -> Result<String> {
        if let Some(plain) = self.opened.lock().expect("secrets cache").get(sealed) {
            return Ok(plain.clone());
        }
        let blob = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or_else(|| Error::internal("stored hub credentials were not sealed with KMS"))?;
        let opened = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(blob))
            .encryption_context(CONTEXT_KEY, CONTEXT_VALUE)
            .send()
            .await
            .map_err(|e| kms_failed("open", &e))?;
        let plain = opened.plaintext().ok_or_else(|| Error::internal("KMS Decrypt returned no plaintext"))?;
        let plain = String::from_utf8(plain.as_ref().to_vec())
            .map_err(|_| Error::internal("opened hub credentials are not text"))?;
        let mut cache = self.opened.lock().expect("secrets cache");
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(sealed.to_owned(), plain.clone());
        Ok(plain)
    }
}
