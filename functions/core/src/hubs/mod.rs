//! The hub port: how provisioning reaches a hub's device registry.
//!
//! A linked hub with a [`HubConnection`](crate::model::HubConnection) names its connector kind; the deployment
//! hands the service one [`HubConnector`] per kind it supports ([`HubConnectors`]). A registration that assigns a
//! device to such a hub is answered `assigned` only after the connector has created (or updated) the device and
//! applied its initial twin; a move reads the twin from the old hub (migration) and removes the device from it. A
//! linked hub without a connection is "record only": the registration is recorded, no hub hears of it.
//!
//! Connectors never see the store; they get the hub's settings and its opened credentials for each call. Every
//! call is idempotent (create-or-update, remove-if-present), so that a registration the device retries after a
//! failure part-way completes it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::model::{AttestationType, HubKind};

mod secret;
pub use secret::{KeySecretBox, SecretBox};

/// One hub, as a connector call sees it.
#[derive(Clone, Copy)]
pub struct HubTarget<'a> {
    /// The linked hub's host name (for AWS IoT Core: the account's IoT data endpoint host).
    pub host_name: &'a str,
    /// The connection's settings (non-secret; documented per kind in docs/hubs.md).
    pub settings: &'a Map<String, Value>,
    /// The connection's credentials, opened (never log them, never put them in an error message).
    pub credentials: Option<&'a str>,
}

/// The device a registration creates or updates in a hub.
#[derive(Debug, Clone)]
pub struct HubDevice {
    /// The device ID in the hub (the enrollment's `deviceId`, else the registration ID).
    pub device_id: String,
    /// The registration ID it provisioned with.
    pub registration_id: String,
    /// How it attested.
    pub attestation: AttestationType,
    /// Symmetric-key and TPM devices: the device's own keys (base64; for a group's device the derived keys),
    /// for hubs whose devices authenticate with them (Azure IoT Hub's `sas` authentication).
    pub symmetric_keys: Option<(String, String)>,
    /// X.509 devices: the leaf certificate the device presented (DER).
    pub certificate: Option<Vec<u8>>,
    /// X.509 devices admitted by a group: the device authenticates with a CA-signed certificate.
    pub ca_signed: bool,
    /// The enrollment's `capabilities.iotEdge`.
    pub iot_edge: bool,
}

/// A device twin as provisioning handles it: tags and desired properties (Azure's initial twin shape).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HubTwin {
    /// `tags`: for AWS IoT Core, the thing's attributes.
    pub tags: Map<String, Value>,
    /// `properties.desired`: for AWS IoT Core, the thing shadow's desired state.
    pub desired: Map<String, Value>,
}

impl HubTwin {
    /// From the wire form `{"tags": {...}, "properties": {"desired": {...}}}` (missing parts are empty).
    pub fn from_initial_twin(twin: &Value) -> Self {
        let object = |v: Option<&Value>| v.and_then(Value::as_object).cloned().unwrap_or_default();
        Self { tags: object(twin.get("tags")), desired: object(twin.get("properties").and_then(|p| p.get("desired"))) }
    }

    /// The wire form.
    pub fn to_initial_twin(&self) -> Value {
        serde_json::json!({ "tags": self.tags, "properties": { "desired": self.desired } })
    }
}

/// Why a hub call failed. The message is shown to operators and devices: never credentials, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubFailure {
    /// What kind of failure (decides the error code, see [`HubFailure::code`]).
    pub kind: HubFailureKind,
    /// What happened, for the registration's `errorMessage`.
    pub message: String,
}

/// Kinds of hub failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubFailureKind {
    /// No answer: connection refused, DNS, TLS, or the call timed out.
    Unreachable,
    /// The hub throttled the call (after the connector's own bounded retries).
    Throttled,
    /// The hub answered and refused (credentials, permissions, a bad request, a conflict it would not resolve).
    Refused,
    /// The hub is linked with a connector this deployment does not have, or with settings it cannot use.
    NotConfigured,
    /// The hub would not issue a certificate for the device's CSR.
    CertificateRefused,
}

/// Error codes of registrations that failed at the hub (`errorCode` of the record; docs/hubs.md lists them).
pub mod codes {
    /// The hub did not answer (connection, DNS, TLS, timeout).
    pub const HUB_UNREACHABLE: u32 = 503_301;
    /// The hub kept throttling.
    pub const HUB_THROTTLED: u32 = 429_301;
    /// The hub refused the call.
    pub const HUB_REFUSED: u32 = 502_301;
    /// The hub's connector is missing from this deployment or misconfigured.
    pub const HUB_NOT_CONFIGURED: u32 = 500_301;
    /// The hub refused to issue a certificate for the CSR.
    pub const CERTIFICATE_REFUSED: u32 = 502_302;
}

impl HubFailure {
    /// A failure of `kind`.
    pub fn new(kind: HubFailureKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// The registration's `errorCode` for this failure.
    pub fn code(&self) -> u32 {
        match self.kind {
            HubFailureKind::Unreachable => codes::HUB_UNREACHABLE,
            HubFailureKind::Throttled => codes::HUB_THROTTLED,
            HubFailureKind::Refused => codes::HUB_REFUSED,
            HubFailureKind::NotConfigured => codes::HUB_NOT_CONFIGURED,
            HubFailureKind::CertificateRefused => codes::CERTIFICATE_REFUSED,
        }
    }
}

/// A hub registry connector: one implementation per [`HubKind`]. Every method is idempotent.
#[async_trait]
pub trait HubConnector: Send + Sync {
    /// Check a connection's settings and credentials when a hub is linked (no hub call needed; a clear message
    /// for the operator when something is missing or malformed).
    fn check_settings(&self, settings: &Map<String, Value>, credentials: Option<&str>) -> Result<(), String>;

    /// Create the device, or update it to match (credentials, capabilities); an existing device is not an
    /// error.
    async fn upsert_device(&self, hub: HubTarget<'_>, device: &HubDevice) -> Result<(), HubFailure>;

    /// Apply a twin: its tags and desired properties replace the device's (a move or a reset), or set them on
    /// a new device.
    async fn apply_twin(&self, hub: HubTarget<'_>, device_id: &str, twin: &HubTwin) -> Result<(), HubFailure>;

    /// Read the device's current twin (for migration); `None` when the hub has no such device.
    async fn read_twin(&self, hub: HubTarget<'_>, device_id: &str) -> Result<Option<HubTwin>, HubFailure>;

    /// Remove the device (and what the connector made for it); a device already gone is not an error.
    async fn remove_device(&self, hub: HubTarget<'_>, device_id: &str) -> Result<(), HubFailure>;

    /// Issue a certificate for the device from its CSR (DER PKCS#10, already checked by the service: subject
    /// CN = registration ID, a strong enough key, a valid self-signature) and make it the device's credential
    /// in the hub. Returns the chain, DER, leaf first. Connectors that cannot issue refuse.
    async fn issue_certificate(
        &self,
        hub: HubTarget<'_>,
        device: &HubDevice,
        csr_der: &[u8],
    ) -> Result<Vec<Vec<u8>>, HubFailure> {
        let _ = (hub, device, csr_der);
        Err(HubFailure::new(HubFailureKind::CertificateRefused, "This hub's connector does not issue certificates"))
    }
}

/// The connectors a deployment has, by kind.
#[derive(Clone, Default)]
pub struct HubConnectors {
    by_kind: BTreeMap<HubKind, Arc<dyn HubConnector>>,
}

impl HubConnectors {
    /// No connectors: every hub is record only, and linking one with a connection is refused.
    pub fn none() -> Self {
        Self::default()
    }

    /// Add (or replace) the connector of `kind`.
    pub fn with(mut self, kind: HubKind, connector: Arc<dyn HubConnector>) -> Self {
        self.by_kind.insert(kind, connector);
        self
    }

    /// The connector of `kind`, if this deployment has one.
    pub fn get(&self, kind: HubKind) -> Option<&Arc<dyn HubConnector>> {
        self.by_kind.get(&kind)
    }

    /// The kinds this deployment has.
    pub fn kinds(&self) -> impl Iterator<Item = HubKind> + '_ {
        self.by_kind.keys().copied()
    }
}
