//! The HTTP registry contract (docs/hub-connectors.md): any registry that implements four signed REST calls
//! can be a linked hub.
//!
//! Settings: `url`, the registry's base URL (https; plain http only to a loopback address, for tests).
//! Credentials: the hub's signing secret (at least 32 characters). Every request carries a timestamp, a nonce
//! and an HMAC-SHA256 signature over method, path, timestamp, nonce and body hash (module `signing`).

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dps_core::hubs::{HubConnector, HubDevice, HubFailure, HubFailureKind, HubTarget, HubTwin};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::rest::{Call, Limits};

pub mod signing;

/// The shortest signing secret accepted.
pub const MIN_SECRET_CHARS: usize = 32;

/// Unreserved characters stay; everything else in a device ID is percent-encoded in paths.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Writes devices and twins into any registry implementing the HTTP registry contract.
pub struct HttpRegistryConnector {
    client: reqwest::Client,
    limits: Limits,
    private_targets: bool,
}

impl HttpRegistryConnector {
    /// A connector with the default limits.
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A connector with these timeouts and retry bounds.
    pub fn with_limits(limits: Limits) -> Self {
        Self { client: limits.client(false), limits, private_targets: false }
    }

    /// Let registry URLs name private, loopback and link-local addresses (off by default: the URL is what an
    /// instance owner links, and the deployment's own network is not theirs to reach).
    pub fn allowing_private_targets(self) -> Self {
        Self { client: self.limits.client(true), private_targets: true, ..self }
    }

    /// The registry's base URL from `settings`, refused when it names a forbidden address literally (names are
    /// judged when they resolve).
    fn target(&self, settings: &Map<String, Value>) -> Result<Url, String> {
        let url = base_url(settings)?;
        if !self.private_targets && dps_netguard::forbidden_url(&url) {
            return Err("the setting url names a private, loopback or link-local address, which this deployment \
                        does not allow"
                .into());
        }
        Ok(url)
    }

    async fn call(
        &self,
        hub: HubTarget<'_>,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Vec<u8>), HubFailure> {
        let not_configured =
            |m: String| HubFailure::new(HubFailureKind::NotConfigured, format!("hub {}: {m}", hub.host_name));
        let base = self.target(hub.settings).map_err(not_configured)?;
        let secret = secret(hub.credentials).map_err(not_configured)?;
        let url = format!("{}{path}", base.as_str().trim_end_matches('/'));
        let url = Url::parse(&url).map_err(|_| not_configured(format!("cannot form a URL for {what}")))?;
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let call = Call { hub: hub.host_name, what, secret };
        let answer = call
            .send(&self.limits, || {
                let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                let nonce = uuid::Uuid::new_v4().to_string();
                let signature = signing::signature(secret, method.as_str(), &path_and_query, timestamp, &nonce, &body);
                let mut request = self
                    .client
                    .request(method.clone(), url.clone())
                    .header(signing::TIMESTAMP_HEADER, timestamp.to_string())
                    .header(signing::NONCE_HEADER, nonce)
                    .header(signing::SIGNATURE_HEADER, signature)
                    .header("Accept", "application/json")
                    .header("User-Agent", concat!("dps-hubs/", env!("CARGO_PKG_VERSION")));
                if !body.is_empty() {
                    request = request.header("Content-Type", "application/json").body(body.clone());
                }
                request
            })
            .await?;
        if answer.status.is_success() || answer.status == StatusCode::NOT_FOUND {
            return Ok((answer.status, answer.body));
        }
        Err(call.refused(&answer))
    }
}

impl Default for HttpRegistryConnector {
    fn default() -> Self {
        Self::new()
    }
}

/// The `url` setting: https, or http to a loopback address; no credentials, query or fragment in it.
fn base_url(settings: &Map<String, Value>) -> Result<Url, String> {
    let text =
        settings.get("url").and_then(Value::as_str).ok_or("the setting url (the registry's base URL) is missing")?;
    let url = Url::parse(text).map_err(|_| format!("the setting url is not a URL: {text:?}"))?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("the setting url must be https (plain http only to a loopback address)".into()),
        other => return Err(format!("the setting url must be https, not {other}")),
    }
    if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err("the setting url must name a host and carry no user name or password".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the setting url must have no query or fragment".into());
    }
    Ok(url)
}

fn secret(credentials: Option<&str>) -> Result<&str, String> {
    match credentials {
        Some(secret) if secret.chars().count() >= MIN_SECRET_CHARS => Ok(secret),
        Some(_) => Err(format!("the signing secret must have at least {MIN_SECRET_CHARS} characters")),
        None => Err("an HTTP registry is linked with its signing secret as credentials".into()),
    }
}

fn device_path(device_id: &str) -> String {
    format!("/devices/{}", utf8_percent_encode(device_id, PATH_SEGMENT))
}

/// The body of `PUT /devices/{id}`.
fn device_body(device: &HubDevice) -> Value {
    let mut body = json!({
        "deviceId": device.device_id,
        "registrationId": device.registration_id,
        "attestation": device.attestation,
        "iotEdge": device.iot_edge,
    });
    if let Some((primary, secondary)) = &device.symmetric_keys {
        body["symmetricKey"] = json!({ "primaryKey": primary, "secondaryKey": secondary });
    }
    if device.certificate.is_some() || device.ca_signed {
        let der = device.certificate.as_deref();
        body["x509"] = json!({
            "certificate": der.map(|d| STANDARD.encode(d)),
            "thumbprint": der.map(|d| Sha256::digest(d).iter().map(|b| format!("{b:02x}")).collect::<String>()),
            "caSigned": device.ca_signed,
        });
    }
    body
}

#[async_trait]
impl HubConnector for HttpRegistryConnector {
    fn check_settings(&self, settings: &Map<String, Value>, credentials: Option<&str>) -> Result<(), String> {
        if let Some(key) = settings.keys().find(|k| *k != "url") {
            return Err(format!("an HTTP registry connector takes only the setting url (got {key:?})"));
        }
        self.target(settings)?;
        secret(credentials).map(|_| ())
    }

    async fn upsert_device(&self, hub: HubTarget<'_>, device: &HubDevice) -> Result<(), HubFailure> {
        let what = format!("create or update device {}", device.device_id);
        let path = device_path(&device.device_id);
        match self.call(hub, &what, Method::PUT, &path, Some(&device_body(device))).await? {
            (StatusCode::NOT_FOUND, _) => {
                Err(HubFailure::new(HubFailureKind::Refused, format!("{}: {what}: 404", hub.host_name)))
            }
            _ => Ok(()),
        }
    }

    async fn apply_twin(&self, hub: HubTarget<'_>, device_id: &str, twin: &HubTwin) -> Result<(), HubFailure> {
        let what = format!("set the twin of {device_id}");
        let path = format!("{}/twin", device_path(device_id));
        match self.call(hub, &what, Method::PUT, &path, Some(&twin.to_initial_twin())).await? {
            (StatusCode::NOT_FOUND, _) => Err(HubFailure::new(
                HubFailureKind::Refused,
                format!("{}: {what}: the registry has no such device", hub.host_name),
            )),
            _ => Ok(()),
        }
    }

    async fn read_twin(&self, hub: HubTarget<'_>, device_id: &str) -> Result<Option<HubTwin>, HubFailure> {
        let what = format!("read the twin of {device_id}");
        let path = format!("{}/twin", device_path(device_id));
        match self.call(hub, &what, Method::GET, &path, None).await? {
            (StatusCode::NOT_FOUND, _) => Ok(None),
            (_, body) => {
                let twin: Value = serde_json::from_slice(&body).map_err(|_| {
                    HubFailure::new(
                        HubFailureKind::Refused,
                        format!("{}: {what}: the answer is not JSON", hub.host_name),
                    )
                })?;
                Ok(Some(HubTwin::from_initial_twin(&twin)))
            }
        }
    }

    async fn remove_device(&self, hub: HubTarget<'_>, device_id: &str) -> Result<(), HubFailure> {
        let what = format!("delete device {device_id}");
        self.call(hub, &what, Method::DELETE, &device_path(device_id), None).await.map(|_| ())
    }
}
