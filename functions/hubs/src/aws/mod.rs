//! AWS IoT Core: a thing per device (thing name = device ID), its attributes from the twin's tags, its classic
//! shadow's desired state from the twin's desired properties, device certificates registered (X.509) or issued
//! from a CSR and attached to the thing and the hub's IoT policy. docs/hub-aws-iot-core.md has the settings,
//! the calls each operation makes, the IAM grants and the costs.
//!
//! A linked hub's host name is the account's IoT data endpoint host (`xxxx-ats.iot.REGION.amazonaws.com`). The
//! connector takes no credentials of its own: calls are signed with the deployment's AWS credentials, or with
//! those of the hub's `roleArn`.

mod clients;
mod errors;
mod registry;
pub mod settings;
mod shadow;
mod twin;

use async_trait::async_trait;
use aws_config::SdkConfig;
use dps_core::hubs::{HubConnector, HubDevice, HubFailure, HubTarget, HubTwin};
use serde_json::{Map, Value};

pub use clients::{ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, MAX_ATTEMPTS, OPERATION_TIMEOUT};
pub use registry::certificate_id;
pub use settings::AwsSettings;

use clients::{ClientCache, HubClients};
use errors::refused;

/// The AWS configuration of the environment (credentials chain, region) for [`AwsIotCoreConnector::new`], loaded
/// with the connector's HTTP client (rustls on ring: the crates are built without the SDK's default client).
/// `fallback_region` is used when the environment names none, so that no instance metadata lookup is made.
pub async fn environment_config(fallback_region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(clients::http_client());
    let named = ["AWS_REGION", "AWS_DEFAULT_REGION"].iter().any(|v| std::env::var_os(v).is_some());
    if let (false, Some(region)) = (named, fallback_region) {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    loader.load().await
}

/// The AWS IoT Core connector (`HubKind::AwsIotCore`).
pub struct AwsIotCoreConnector {
    clients: ClientCache,
    endpoint_overrides: bool,
}

impl AwsIotCoreConnector {
    /// A connector signing with `sdk`'s credentials (and its region, unless a hub says otherwise). Its own
    /// timeouts and retries replace `sdk`'s; `sdk`'s endpoint override is not used (hubs have `endpointUrl`).
    pub fn new(sdk: &SdkConfig) -> Self {
        Self { clients: ClientCache::new(sdk), endpoint_overrides: false }
    }

    /// Honour hubs' `endpointUrl` / `dataEndpointUrl` settings (emulators, VPC endpoints). Off by default: a hub is
    /// linked by an instance owner, and an endpoint of their choosing would receive requests signed with the
    /// deployment's credentials.
    pub fn allowing_endpoint_overrides(self) -> Self {
        Self { endpoint_overrides: true, ..self }
    }

    /// The hub's settings, checked, with endpoint overrides refused unless this deployment allows them.
    fn settings(&self, settings: &Map<String, Value>) -> Result<AwsSettings, String> {
        let parsed = AwsSettings::parse(settings)?;
        let overridden =
            parsed.endpoint_url.is_some() || parsed.data_endpoint_url.is_some() || parsed.sts_endpoint_url.is_some();
        if !self.endpoint_overrides && overridden {
            return Err(format!(
                "Settings '{}', '{}' and '{}' are not allowed in this deployment (they send requests signed with its \
                 credentials elsewhere)",
                settings::ENDPOINT_URL,
                settings::DATA_ENDPOINT_URL,
                settings::STS_ENDPOINT_URL
            ));
        }
        Ok(parsed)
    }

    async fn hub(&self, hub: HubTarget<'_>, thing: &str) -> Result<(HubClients, AwsSettings), HubFailure> {
        let settings = self.settings(hub.settings).map_err(|why| {
            HubFailure::new(
                dps_core::hubs::HubFailureKind::NotConfigured,
                format!("AWS IoT Core hub '{}': {why}", hub.host_name),
            )
        })?;
        // Without an override the shadow calls go to the hub's host name, signed with the deployment's
        // credentials: it must be an AWS IoT Core endpoint, not a host of the instance owner's choosing.
        if settings.data_endpoint_url.is_none() && !settings::is_iot_data_endpoint(hub.host_name) {
            return Err(HubFailure::new(
                dps_core::hubs::HubFailureKind::NotConfigured,
                format!(
                    "AWS IoT Core hub '{}': the host name must be the account's IoT data endpoint \
                     ({{prefix}}-ats.iot.{{region}}.amazonaws.com)",
                    hub.host_name
                ),
            ));
        }
        if !settings::valid_thing_name(thing) {
            return Err(refused(format!(
                "Device ID '{thing}' cannot be an AWS IoT Core thing name (1 to 128 of letters, digits, ':', '_', '-')"
            )));
        }
        Ok((self.clients.get(hub.host_name, &settings).await, settings))
    }
}

#[async_trait]
impl HubConnector for AwsIotCoreConnector {
    fn check_settings(&self, settings: &Map<String, Value>, credentials: Option<&str>) -> Result<(), String> {
        if credentials.is_some() {
            return Err("AWS IoT Core hubs take no credentials: calls use the deployment's IAM role, or the hub's \
                        roleArn setting for another account"
                .into());
        }
        self.settings(settings).map(|_| ())
    }

    async fn upsert_device(&self, hub: HubTarget<'_>, device: &HubDevice) -> Result<(), HubFailure> {
        let thing = device.device_id.as_str();
        let (clients, settings) = self.hub(hub, thing).await?;
        registry::upsert_thing(&clients.iot, thing, &settings).await?;
        if let Some(der) = &device.certificate {
            let arn = registry::register_certificate(&clients.iot, thing, der).await?;
            registry::attach(&clients.iot, thing, &arn, &settings).await?;
        }
        Ok(())
    }

    async fn apply_twin(&self, hub: HubTarget<'_>, device_id: &str, twin: &HubTwin) -> Result<(), HubFailure> {
        let (clients, settings) = self.hub(hub, device_id).await?;
        // Checked before any call, so that a twin IoT Core cannot hold changes nothing.
        let attributes = twin::attributes(device_id, &twin.tags, settings.max_attributes())?;
        registry::set_attributes(&clients.iot, device_id, attributes).await?;
        let current = shadow::desired(&clients.data, device_id).await?;
        if current.is_none() && twin.desired.is_empty() {
            return Ok(());
        }
        if let Some(update) = twin::desired_update(&current.unwrap_or_default(), &twin.desired) {
            shadow::update_desired(&clients.data, device_id, update).await?;
        }
        Ok(())
    }

    async fn read_twin(&self, hub: HubTarget<'_>, device_id: &str) -> Result<Option<HubTwin>, HubFailure> {
        let (clients, _) = self.hub(hub, device_id).await?;
        let Some(attributes) = registry::attributes(&clients.iot, device_id).await? else {
            return Ok(None);
        };
        let desired = shadow::desired(&clients.data, device_id).await?.unwrap_or_default();
        Ok(Some(HubTwin { tags: twin::tags(Some(&attributes)), desired }))
    }

    async fn remove_device(&self, hub: HubTarget<'_>, device_id: &str) -> Result<(), HubFailure> {
        let (clients, settings) = self.hub(hub, device_id).await?;
        // The shadow first: once the thing is gone a retried removal would not know to look for it.
        shadow::delete(&clients.data, device_id).await?;
        registry::remove_thing(&clients.iot, device_id, &settings).await
    }

    async fn issue_certificate(
        &self,
        hub: HubTarget<'_>,
        device: &HubDevice,
        csr_der: &[u8],
    ) -> Result<Vec<Vec<u8>>, HubFailure> {
        let thing = device.device_id.as_str();
        let (clients, settings) = self.hub(hub, thing).await?;
        let (arn, der) = registry::issue_certificate(&clients.iot, thing, csr_der).await?;
        if let Err(failure) = registry::attach(&clients.iot, thing, &arn, &settings).await {
            // An issued certificate nobody received must not stay active.
            if let Some((_, id)) = arn.split_once(":cert/")
                && let Err(cleanup) = registry::deactivate_and_delete(&clients.iot, thing, id).await
            {
                tracing::warn!(thing, certificate = id, error = %cleanup.message, "issued certificate not cleaned up");
            }
            return Err(failure);
        }
        // IoT Core's issuing CA is Amazon's; devices trust it through Amazon's root, so the chain is the leaf.
        Ok(vec![der])
    }
}
