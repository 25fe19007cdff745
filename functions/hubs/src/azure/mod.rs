//! Azure IoT Hub: the registry REST API (api-version 2021-04-12) with the hub's connection string, as Azure DPS
//! links hubs (docs/hub-azure-iot-hub.md).
//!
//! A registration creates the device (`PUT /devices/{id}`, no `If-Match`); a device that exists (409) is read
//! and updated under its etag; the twin is read for its etag and patched to the wanted tags and desired
//! properties (412: read again). Requests match what the official service SDKs send (the oracle in
//! tests/hubs/azure).

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use dps_core::hubs::{HubConnector, HubDevice, HubFailure, HubFailureKind, HubTarget, HubTwin};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use crate::rest::{Answer, Call, Limits};

mod connection_string;
mod wire;

use connection_string::ConnectionString;

/// The registry API version the connector speaks (and the oracle recorded).
pub const API_VERSION: &str = "2021-04-12";

/// How long each hub SAS token is valid (the service SDKs use an hour; one is signed per request).
const TOKEN_LIFETIME_SECS: u64 = 3600;

/// Conditional writes that hit a concurrent change are retried this often before giving up.
const CONFLICT_ROUNDS: usize = 3;

/// `encodeURIComponent`: how the SDKs put a device ID in a path.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Writes devices and twins into Azure IoT Hubs. Settings: none. Credentials: the hub's connection string.
pub struct AzureIotHubConnector {
    client: reqwest::Client,
    limits: Limits,
    endpoint: Option<String>,
}

/// Refusal of a hub whose host name is a literal private, loopback or link-local address.
fn forbidden_host(host: &str) -> HubFailure {
    HubFailure::new(
        HubFailureKind::NotConfigured,
        format!(
            "hub {host}: the hub's address is not allowed (private, loopback and link-local addresses are not allowed here)"
        ),
    )
}

impl AzureIotHubConnector {
    /// A connector calling `https://{HostName}` with the default limits.
    pub fn new() -> Self {
        Self::with_limits(Limits::default())
    }

    /// A connector with these timeouts and retry bounds.
    pub fn with_limits(limits: Limits) -> Self {
        Self { client: limits.client(false), limits, endpoint: None }
    }

    /// Call `endpoint` (for example `http://127.0.0.1:8080`) instead of `https://{HostName}`, for tests against
    /// a local registry; tokens are still signed for the hub's HostName.
    /// The endpoint is the operator's, not a tenant's: it may be private or loopback.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into().trim_end_matches('/').to_owned());
        self.client = self.limits.client(true);
        self
    }

    fn open(&self, hub: HubTarget<'_>) -> Result<ConnectionString, HubFailure> {
        let not_configured = |message: String| HubFailure::new(HubFailureKind::NotConfigured, message);
        let text = hub
            .credentials
            .ok_or_else(|| not_configured(format!("hub {} is linked without its connection string", hub.host_name)))?;
        let cs = ConnectionString::parse(text).map_err(|e| not_configured(format!("hub {}: {e}", hub.host_name)))?;
        if !cs.host_name.eq_ignore_ascii_case(hub.host_name) {
            return Err(not_configured(format!(
                "hub {}: its connection string is for HostName {}",
                hub.host_name, cs.host_name
            )));
        }
        Ok(cs)
    }
}

impl Default for AzureIotHubConnector {
    fn default() -> Self {
        Self::new()
    }
}

/// One hub, opened for a call: its connection string and where its registry answers.
struct Registry<'a> {
    connector: &'a AzureIotHubConnector,
    cs: ConnectionString,
    base: String,
}

impl Registry<'_> {
    fn url(&self, collection: &str, device_id: &str) -> String {
        let id = utf8_percent_encode(device_id, PATH_SEGMENT);
        format!("{}/{collection}/{id}?api-version={API_VERSION}", self.base)
    }

    /// One registry call: a fresh token, `If-Match` when given (quoted, as the SDKs quote it), JSON body.
    async fn call(
        &self,
        what: &str,
        method: Method,
        url: &str,
        if_match: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, HubFailure> {
        self.describe(what)
            .send(&self.connector.limits, || {
                let expiry = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
                let mut request = self
                    .connector
                    .client
                    .request(method.clone(), url)
                    .header("Authorization", self.cs.token(expiry + TOKEN_LIFETIME_SECS))
                    .header("Accept", "application/json")
                    .header("Request-Id", uuid::Uuid::new_v4().to_string())
                    .header("User-Agent", concat!("dps-hubs/", env!("CARGO_PKG_VERSION")));
                if let Some(etag) = if_match {
                    request = request.header("If-Match", quoted(etag));
                }
                if let Some(body) = body {
                    request = request.header("Content-Type", "application/json; charset=utf-8").body(body.to_string());
                }
                request
            })
            .await
    }

    /// The call `what`, for wording its failures.
    fn describe<'b>(&'b self, what: &'b str) -> Call<'b> {
        Call { hub: &self.cs.host_name, what, secret: &self.cs.key_text }
    }

    async fn read_twin(&self, device_id: &str) -> Result<Option<(String, HubTwin)>, HubFailure> {
        let what = format!("read the twin of {device_id}");
        let call = self.describe(&what);
        let answer = self.call(&what, Method::GET, &self.url("twins", device_id), None, None).await?;
        match answer.status {
            StatusCode::OK => wire::parse_twin(&answer.body).map(Some).map_err(|e| call.malformed(&e)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(call.refused(&answer)),
        }
    }

    async fn device_etag(&self, device_id: &str) -> Result<Option<String>, HubFailure> {
        let what = format!("read device {device_id}");
        let call = self.describe(&what);
        let answer = self.call(&what, Method::GET, &self.url("devices", device_id), None, None).await?;
        match answer.status {
            StatusCode::OK => {
                let device: Value = serde_json::from_slice(&answer.body).map_err(|_| call.malformed("not JSON"))?;
                let etag = device.get("etag").and_then(Value::as_str).ok_or_else(|| call.malformed("no etag"))?;
                Ok(Some(etag.to_owned()))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(call.refused(&answer)),
        }
    }
}

fn quoted(etag: &str) -> String {
    if etag.len() >= 2 && etag.starts_with('"') && etag.ends_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

fn conflict_failure(hub: &str, what: &str) -> HubFailure {
    HubFailure::new(
        HubFailureKind::Refused,
        format!("{hub}: {what} kept changing concurrently ({CONFLICT_ROUNDS} rounds)"),
    )
}

impl AzureIotHubConnector {
    fn registry(&self, hub: HubTarget<'_>) -> Result<Registry<'_>, HubFailure> {
        let cs = self.open(hub)?;
        let base = self.endpoint.clone().unwrap_or_else(|| format!("https://{}", cs.host_name));
        // The URL as it will be called: a host name of digits is an IPv4 address to the URL parser.
        if self.endpoint.is_none() && url::Url::parse(&base).map_or(true, |u| dps_netguard::forbidden_url(&u)) {
            return Err(forbidden_host(&cs.host_name));
        }
        Ok(Registry { connector: self, cs, base })
    }
}

#[async_trait]
impl HubConnector for AzureIotHubConnector {
    fn check_settings(&self, settings: &Map<String, Value>, credentials: Option<&str>) -> Result<(), String> {
        if let Some(key) = settings.keys().next() {
            return Err(format!("an Azure IoT Hub connector takes no settings (got {key:?})"));
        }
        let text = credentials.ok_or("an Azure IoT Hub is linked with its connection string as credentials")?;
        ConnectionString::parse(text).map(|_| ())
    }

    async fn upsert_device(&self, hub: HubTarget<'_>, device: &HubDevice) -> Result<(), HubFailure> {
        let registry = self.registry(hub)?;
        let body = wire::device_body(device).map_err(|e| HubFailure::new(HubFailureKind::Refused, e))?;
        let url = registry.url("devices", &device.device_id);
        let (create, update) =
            (format!("create device {}", device.device_id), format!("update device {}", device.device_id));
        for _ in 0..CONFLICT_ROUNDS {
            let call = registry.describe(&create);
            let answer = registry.call(&create, Method::PUT, &url, None, Some(&body)).await?;
            match answer.status {
                s if s.is_success() => return Ok(()),
                StatusCode::CONFLICT => {}
                _ => return Err(call.refused(&answer)),
            }
            // It exists: update it under the etag just read; a concurrent change (412) or delete starts over.
            let Some(etag) = registry.device_etag(&device.device_id).await? else { continue };
            let call = registry.describe(&update);
            let answer = registry.call(&update, Method::PUT, &url, Some(&etag), Some(&body)).await?;
            match answer.status {
                s if s.is_success() => return Ok(()),
                StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND => {}
                _ => return Err(call.refused(&answer)),
            }
        }
        Err(conflict_failure(hub.host_name, &create))
    }

    async fn apply_twin(&self, hub: HubTarget<'_>, device_id: &str, twin: &HubTwin) -> Result<(), HubFailure> {
        let registry = self.registry(hub)?;
        let what = format!("update the twin of {device_id}");
        for _ in 0..CONFLICT_ROUNDS {
            let Some((etag, current)) = registry.read_twin(device_id).await? else {
                let message = format!("{}: {what}: the hub has no device {device_id}", hub.host_name);
                return Err(HubFailure::new(HubFailureKind::Refused, message));
            };
            let Some(patch) = wire::twin_patch(&current, twin) else { return Ok(()) };
            let url = registry.url("twins", device_id);
            let call = registry.describe(&what);
            let answer = registry.call(&what, Method::PATCH, &url, Some(&etag), Some(&patch)).await?;
            match answer.status {
                s if s.is_success() => return Ok(()),
                StatusCode::PRECONDITION_FAILED => {}
                _ => return Err(call.refused(&answer)),
            }
        }
        Err(conflict_failure(hub.host_name, &what))
    }

    async fn read_twin(&self, hub: HubTarget<'_>, device_id: &str) -> Result<Option<HubTwin>, HubFailure> {
        Ok(self.registry(hub)?.read_twin(device_id).await?.map(|(_, twin)| twin))
    }

    async fn remove_device(&self, hub: HubTarget<'_>, device_id: &str) -> Result<(), HubFailure> {
        let registry = self.registry(hub)?;
        let what = format!("delete device {device_id}");
        let url = registry.url("devices", device_id);
        let call = registry.describe(&what);
        let answer = registry.call(&what, Method::DELETE, &url, Some("*"), None).await?;
        match answer.status {
            s if s.is_success() || s == StatusCode::NOT_FOUND => Ok(()),
            _ => Err(call.refused(&answer)),
        }
    }
}
