//! How a linked hub's device registry is written: its connector kind, settings and sealed credentials.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Connector kinds (the `kind` of a linked hub's `connector`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum HubKind {
    /// AWS IoT Core: a thing per device, its shadow and attributes, certificates (docs/hubs.md).
    AwsIotCore,
    /// Azure IoT Hub: the registry REST API with the hub's connection string.
    AzureIotHub,
    /// Any registry implementing the documented HTTP contract.
    HttpRegistry,
}

impl HubKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            HubKind::AwsIotCore => "awsIotCore",
            HubKind::AzureIotHub => "azureIotHub",
            HubKind::HttpRegistry => "httpRegistry",
        }
    }
}

/// A linked hub's connector, as stored: credentials only ever sealed (see `hubs::SecretBox`).
///
/// On the service API, `credentials` is write-only: a PUT carries them in plaintext and the service seals them
/// before they are stored; every answer leaves them out and says `credentialsSet` instead. A PUT without
/// `credentials` keeps the hub's current ones while the kind and settings are unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubConnection {
    /// Which connector writes this hub's registry.
    pub kind: HubKind,
    /// The connector's settings (non-secret; per kind, docs/hubs.md).
    #[serde(default)]
    pub settings: Map<String, Value>,
    /// Stored: the sealed credentials. Service API input: plaintext. Never in an answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    /// Answers only: whether credentials are set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub credentials_set: bool,
}

impl HubConnection {
    /// The connection as answers show it: no credentials, `credentialsSet` instead.
    pub fn without_credentials(&self) -> Self {
        Self {
            kind: self.kind,
            settings: self.settings.clone(),
            credentials: None,
            credentials_set: self.credentials.is_some(),
        }
    }
}

/// A device in a hub: where a removal is still owed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HubDeviceRef {
    /// The hub's host name.
    pub hub: String,
    /// The device's ID there.
    pub device_id: String,
}
