//! The store, the custom allocator and the service, built once per process (cold start) from the caller's AWS
//! credentials chain (environment variables on Lambda; profiles, SSO or a credential process for operators).

use std::sync::Arc;

use dps_core::Dps;
use dps_core::hubs::HubConnectors;
use dps_core::model::HubKind;
use dps_custom_allocation::s3::S3Storage;
use dps_custom_allocation::{PolicyAllocator, PolicySettings};
use dps_hubs::aws::AwsIotCoreConnector;
use dps_hubs::{AzureIotHubConnector, HttpRegistryConnector};

use crate::FunctionConfig;

/// The provisioning service as a Lambda function runs it: the DynamoDB store (one SDK client, rustls on ring,
/// the store's retry and timeout settings) and, when the policy bucket is configured, custom allocation with
/// WebAssembly modules kept in that bucket and webhooks. Every invocation of the warm function reuses it.
pub async fn dps(config: &FunctionConfig) -> dps_core::Result<Dps> {
    // One SDK configuration (credentials chain, region, rustls HTTP client) for every AWS client of the function:
    // loading it is the slow part of a cold start.
    let sdk = config.dynamo.sdk_config().await;
    let mut store = config.dynamo.store(&sdk);
    if !config.reads_access_keys {
        // The device function's role may read an instance item's configuration, not its access keys.
        store = store.without_access_keys();
    }
    // Hubs linked with `connector.kind: awsIotCore` are written with the function's own role (or the role a
    // hub's `roleArn` names); the template grants the IoT actions the connector makes. The connector sets its own
    // retries and timeouts and drops the store's endpoint override.
    let (mut iot, mut registry) = (AwsIotCoreConnector::new(&sdk), HttpRegistryConnector::new());
    if config.hub_endpoint_overrides {
        iot = iot.allowing_endpoint_overrides();
        registry = registry.allowing_private_targets();
    }
    let mut azure = AzureIotHubConnector::new();
    if let Some(endpoint) = &config.azure_hub_endpoint {
        azure = azure.with_endpoint(endpoint);
    }
    let hubs = HubConnectors::none()
        .with(HubKind::AwsIotCore, Arc::new(iot))
        .with(HubKind::AzureIotHub, Arc::new(azure))
        .with(HubKind::HttpRegistry, Arc::new(registry));
    let mut dps = Dps::new(Arc::new(store), config.settings()).with_hubs(hubs);
    // Hub credentials (Azure connection strings, HTTP registry secrets) are sealed with the template's KMS key;
    // without DPS_SECRETS_KMS_KEY a hub cannot be linked with credentials.
    if let Some(secrets) = crate::secrets::KmsSecretBox::from_config(config, &sdk) {
        dps = dps.with_secret_box(Arc::new(secrets));
    }
    // Lifecycle events go to the template's EventBridge bus when DPS_EVENT_BUS is set.
    if let Some(events) = crate::events::EventBridgeSink::from_config(config, &sdk) {
        dps = dps.with_events(Arc::new(events));
    }
    let Some(bucket) = &config.policy_bucket else {
        return Ok(dps);
    };
    let storage: Arc<S3Storage> = Arc::new(S3Storage::from_env(bucket.clone(), config.s3_endpoint.clone()).await);
    // A Lambda instance serves one request at a time: a small pool is plenty. If the pooling allocator cannot
    // reserve its address space here, fall back to on-demand instantiation rather than fail the cold start.
    let pooled = PolicySettings { pool_slots: 2, ..PolicySettings::default() };
    let policies = match PolicyAllocator::new(storage.clone(), pooled) {
        Ok(policies) => policies,
        Err(err) => {
            tracing::warn!(error = %err, "pooling allocator unavailable; instantiating policies on demand");
            PolicyAllocator::new(storage, PolicySettings { pool_slots: 0, ..PolicySettings::default() })?
        }
    };
    let policies = Arc::new(policies);
    Ok(dps.with_allocator(policies.clone()).with_policies(policies))
}
