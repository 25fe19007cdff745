//! Custom allocation webhooks with Azure's contract: POST the AllocationRequest, read a bounded
//! AllocationResponse. Signed with the instance's key; private, loopback and link-local targets are refused
//! (after DNS resolution, on the addresses actually connected to) unless the instance allows them.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use dps_core::allocator::AllocationRequest;
use dps_core::allocator::{AllocationFailure, AllocationResponse};
use dps_core::model::Instance;
use hmac::{Hmac, Mac};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
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
#[derive(Debug, thiserror::Error)]
#[error("{host} ({addr})")]
struct ForbiddenTarget {
    host: String,
    addr: IpAddr,
}

/// Resolves with the system resolver, then refuses names with any forbidden address.
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| forbidden(a.ip())) {
                return Err(Box::new(ForbiddenTarget { host, addr: bad.ip() }) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

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
        if !self.private_allowed(instance) {
            let literal = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
            if literal.is_some_and(forbidden) {
                return Err(forbidden_target(host));
            }
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
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = source {
            if let Some(target) = e.downcast_ref::<ForbiddenTarget>() {
                return forbidden_target(&target.to_string());
            }
            source = e.source();
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

/// Whether an address is one webhooks may not reach by default: loopback, private, link-local, unspecified,
/// carrier-grade NAT, multicast, broadcast, documentation, unique-local, and IPv4 inside IPv6: mapped
/// (`::ffff:0:0/96`), translated (`::ffff:0:0:0/96`), compatible, 6to4 (`2002::/16`, judged by the IPv4 address it
/// embeds), Teredo (`2001::/32`, whose embedded client address is obscured: refused whole) and NAT64 (`64:ff9b::/32`).
pub fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let seg = v6.segments();
            let first = seg[0];
            let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            if first == 0x2002 {
                return forbidden_v4(embedded(seg[1], seg[2]));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || v6.segments()[..6] == [0, 0, 0, 0, 0, 0] // IPv4-compatible ::a.b.c.d
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 to anything
                || first == 0x2001 && v6.segments()[1] == 0x0000 // Teredo
                || seg[..6] == [0, 0, 0, 0, 0xffff, 0] // IPv4-translated ::ffff:0:a.b.c.d
        }
    }
}

fn forbidden_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2002:7f00:1::",
            "2002:a00:1::1",
            "2002:c0a8:101::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "::ffff:0:127.0.0.1",
            "64:ff9b::7f00:1",
        ] {
            assert!(forbidden(bad.parse().unwrap()), "{bad} should be forbidden");
        }
        for good in ["8.8.8.8", "52.95.110.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"] {
            assert!(!forbidden(good.parse().unwrap()), "{good} should be allowed");
        }
    }

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
