//! Hub connectors and the key that seals their credentials, for `dps serve`.
//!
//! The AWS IoT Core connector is there when `--aws-hubs` is given: it uses the AWS credentials and region of the
//! environment (the standard chain: `AWS_ACCESS_KEY_ID`…, profiles, SSO), and each linked hub's settings may
//! point it elsewhere (`endpointUrl` / `dataEndpointUrl`, e.g. a moto server). Off by default so that a
//! machine without AWS never tries to find credentials. Credentials of linked hubs (Azure connection strings,
//! HTTP registry secrets) are sealed with a key kept in the data dir, `hub-secrets.key` (made once, mode 0600).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use dps_core::hubs::{HubConnectors, KeySecretBox};
use dps_core::model::HubKind;

/// The key file's name in the data dir.
const KEY_FILE: &str = "hub-secrets.key";

/// The connectors this process has: Azure IoT Hub and the HTTP registry always (`azure_endpoint` sends Azure
/// registry calls to a local stand-in, for tests), AWS IoT Core when `aws`. HTTP registry URLs may name private,
/// loopback and link-local addresses, and AWS IoT Core hubs may name their own endpoints (emulators), only when
/// `private_targets`.
pub async fn connectors(aws: bool, azure_endpoint: Option<&str>, private_targets: bool) -> HubConnectors {
    let mut azure = dps_hubs::AzureIotHubConnector::new();
    if let Some(endpoint) = azure_endpoint {
        azure = azure.with_endpoint(endpoint);
    }
    let mut connectors = HubConnectors::none()
        .with(HubKind::AzureIotHub, Arc::new(azure))
        .with(HubKind::HttpRegistry, Arc::new(registry(private_targets)));
    if aws {
        // Without a region in the environment the SDK would ask the instance metadata service; a hub's own
        // `region` setting (or its host name) decides per call anyway.
        let sdk = dps_hubs::aws::environment_config(Some("us-east-1")).await;
        let mut iot = dps_hubs::aws::AwsIotCoreConnector::new(&sdk);
        if private_targets {
            iot = iot.allowing_endpoint_overrides();
        }
        connectors = connectors.with(HubKind::AwsIotCore, Arc::new(iot));
    }
    connectors
}

fn registry(private_targets: bool) -> dps_hubs::HttpRegistryConnector {
    let connector = dps_hubs::HttpRegistryConnector::new();
    if private_targets { connector.allowing_private_targets() } else { connector }
}

/// The secret box over the data dir's key (made on first use).
pub fn secret_box(data_dir: &Path) -> anyhow::Result<KeySecretBox> {
    let path = data_dir.join(KEY_FILE);
    let key: [u8; 32] = match std::fs::read(&path) {
        Ok(bytes) => bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key; restore it from a backup", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeySecretBox::generate_key();
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            file.write_all(&key)
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            key
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    Ok(KeySecretBox::new(&key))
}
