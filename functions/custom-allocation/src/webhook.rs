//! Custom allocation webhooks with Azure's contract: POST the AllocationRequest, read a bounded
//! AllocationResponse. Signed with the instance's key; private, loopback and link-local targets are refused
//! (after DNS resolution, on the addresses actually connected to) unless the instance allows them.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use dps_core::allocator::AllocationRequest;
use dps_core::allocator::{AllocationFailure, AllocationResponse};
use dps_core::model::Instance;
use dps_netguard::{ForbiddenTarget, PublicOnly, forbidden_url};
use hmac::{Hmac, Mac};
use reqwest::{Client, Url};
use serde_json::Value;
use sha2::Sha256;

use crate::codes::{self, failure};

/// Header carrying `sha256=<lowercase hex HMAC-SHA256 of the body>`, keyed with the instance's
/// `webhookSigningKey` (base64-decoded).
pub const SIGNATURE_HEADER: &str = "x-dps-signature-256";

/// Timeouts and bounds of webhook calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSettings {
    /// TCP + TLS connection timeout.
    pub connect_timeout: Duration,
    /// Whole-call timeout (connect, request, response body).
    pub total_timeout: Duration,
    /// Largest response body read, in bytes.
    pub max_response_bytes: usize,
    /// Whether this deployment lets instances reach private, loopback and link-local targets at all. An instance's
    /// `allowPrivateWebhookTargets` takes effect only when this is on: the instance owner alone cannot switch off
    /// the guard that protects the deployment's own network. Off by default.
    pub permit_private_targets: bool,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            max_response_bytes: 64 << 10,
            permit_private_targets: false,
        }
    }
}

/// The webhook client: one connection pool for instances that forbid private targets, one for those that
/// allow them.
pub struct Webhooks {
    public_only: Client,
    any_target: Client,
    settings: WebhookSettings,
}

/// Marks a DNS answer refused because it contains a forbidden address.
impl Webhooks {
    /// Clients with `settings`: no redirects, no proxies, rustls with the webpki roots.
    pub fn new(settings: WebhookSettings) -> Result<Self, reqwest::Error> {
        let builder = || {
            Client::builder()
                .connect_timeout(settings.connect_timeout)
                .timeout(settings.total_timeout)
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .user_agent(concat!("dps-custom-allocation/", env!("CARGO_PKG_VERSION")))
        };
        Ok(Self {
            public_only: builder().dns_resolver(Arc::new(PublicOnly)).build()?,
            any_target: builder().build()?,
            settings,
        })
    }

    /// Private targets (and plain http) for this instance: the deployment permits them and the instance opts in.
    fn private_allowed(&self, instance: &Instance) -> bool {
        self.settings.permit_private_targets && instance.allow_private_webhook_targets
    }

    /// Check a webhook URL as an enrollment is written: parsable, https (http only for instances that allow
    /// private targets), no credentials, and not a literal forbidden address.
    pub fn check_url(&self, instance: &Instance, url: &str) -> Result<Url, AllocationFailure> {
        let bad =
            |why: &str| failure(codes::WEBHOOK_BAD_URL, format!("Custom allocation webhook URL is invalid: {why}"));
        let url = Url::parse(url).map_err(|_| bad("not an absolute URL"))?;
        match url.scheme() {
            "https" => {}
            "http" if self.private_allowed(instance) => {}
            _ => return Err(bad("it must use https")),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad("it must not carry credentials (Azure Functions keys go in the query)"));
        }
        let host = url.host_str().ok_or_else(|| bad("it has no host"))?;
        if !self.private_allowed(instance) && forbidden_url(&url) {
            return Err(forbidden_target(host));
        }
        Ok(url)
    }

    /// POST `request` to the webhook and read its AllocationResponse.
    pub async fn call(
        &self,
        instance: &Instance,
        url: &str,
        request: &AllocationRequest,
    ) -> Result<AllocationResponse, AllocationFailure> {
        let url = self.check_url(instance, url)?;
        let body = serde_json::to_vec(request)
            .map_err(|e| failure(codes::WEBHOOK_BAD_RESPONSE, format!("Cannot encode the request: {e}")))?;
        let client = if self.private_allowed(instance) { &self.any_target } else { &self.public_only };
        let mut call = client
            .post(url)
            .header("content-type", "application/json; charset=utf-8")
            .header("accept", "application/json");
        if let Some(signature) = instance.webhook_signing_key.as_deref().map(|key| sign(key, &body)) {
            call = call.header(SIGNATURE_HEADER, signature);
        }
        let mut response = call.body(body).send().await.map_err(|e| self.transport_failure(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(codes::webhook_status(status.as_u16()));
        }
        let limit = self.settings.max_response_bytes;
        let too_large = || {
            failure(
                codes::WEBHOOK_RESPONSE_TOO_LARGE,
                format!("Custom allocation webhook answered with more than {limit} bytes"),
            )
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_failure(&e))? {
            if bytes.len() + chunk.len() > limit {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        parse_response(&bytes).map_err(|why| {
            failure(codes::WEBHOOK_BAD_RESPONSE, format!("Custom allocation webhook answered with {why}"))
        })
    }

    fn transport_failure(&self, error: &reqwest::Error) -> AllocationFailure {
        if let Some(target) = ForbiddenTarget::in_chain(error) {
            return forbidden_target(&target.to_string());
        }
        if error.is_timeout() {
            let secs = self.settings.total_timeout.as_secs_f32();
            return failure(
                codes::WEBHOOK_TIMEOUT,
                format!("Custom allocation webhook did not answer within {secs} s"),
            );
        }
        failure(codes::WEBHOOK_UNREACHABLE, "Custom allocation webhook could not be reached")
    }
}

/// The refusal of a private target. The device (and the record) learn only that the target is not allowed, never
/// the address it resolved to; the operator's log has `what`.
fn forbidden_target(what: &str) -> AllocationFailure {
    tracing::warn!(target_address = %what, "webhook target refused: private, loopback or link-local address");
    failure(
        codes::WEBHOOK_FORBIDDEN_TARGET,
        "Custom allocation webhook target is not allowed (private, loopback and link-local addresses are not \
         allowed here)",
    )
}

/// Parse an AllocationResponse (JSON object with a non-empty `iotHubHostName`); the error says what is wrong.
pub(crate) fn parse_response(bytes: &[u8]) -> Result<AllocationResponse, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON ({e})"))?;
    response_from_value(value)
}

/// Check an AllocationResponse already parsed as JSON.
pub(crate) fn response_from_value(value: Value) -> Result<AllocationResponse, String> {
    if !value.is_object() {
        return Err("JSON that is not an object".into());
    }
    let response: AllocationResponse =
        serde_json::from_value(value).map_err(|e| format!("an invalid AllocationResponse ({e})"))?;
    if response.iot_hub_host_name.trim().is_empty() {
        return Err("an empty iotHubHostName".into());
    }
    Ok(response)
}

/// `sha256=<hex>` of HMAC-SHA256(key, body); a key that is not base64 is used as raw bytes.
pub fn sign(key: &str, body: &[u8]) -> String {
    let raw = base64::engine::general_purpose::STANDARD.decode(key).unwrap_or_else(|_| key.as_bytes().to_vec());
    let mut mac = Hmac::<Sha256>::new_from_slice(&raw).expect("HMAC accepts any key length");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // HMAC-SHA256(key = b"key", "The quick brown fox jumps over the lazy dog"), a published test vector.
        let key = base64::engine::general_purpose::STANDARD.encode(b"key");
        assert_eq!(
            sign(&key, b"The quick brown fox jumps over the lazy dog"),
            "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
