//! SDK clients per hub: built from the deployment's `SdkConfig` with this connector's timeouts and retries, a
//! region and endpoints from the hub's settings, and assumed-role credentials when the hub names a role. Built
//! once per (region, role, endpoints) and cached: an assumed role's credentials are refreshed by its provider.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_types::sdk_config::SharedCredentialsProvider;

use super::settings::AwsSettings;

/// Attempts per call, first one included (standard mode: throttling and transient errors, with jittered backoff).
pub const MAX_ATTEMPTS: u32 = 3;
/// First backoff of the retry schedule.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest single backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Connect timeout (IoT Core endpoints answer in milliseconds from the same region).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Timeout of one attempt.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one call, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Session name of assumed roles (shows in the hub account's CloudTrail).
const SESSION_NAME: &str = "dps-hub-connector";

/// The two clients one hub's calls use.
#[derive(Clone)]
pub(crate) struct HubClients {
    /// Registry and certificates (`iot`).
    pub iot: aws_sdk_iot::Client,
    /// Thing shadows (`iot-data`).
    pub data: aws_sdk_iotdataplane::Client,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    region: Option<String>,
    role_arn: Option<String>,
    external_id: Option<String>,
    endpoint_url: Option<String>,
    data_endpoint_url: String,
    sts_endpoint_url: Option<String>,
}

/// Clients by hub.
pub(crate) struct ClientCache {
    base: SdkConfig,
    clients: Mutex<HashMap<Key, HubClients>>,
}

/// The HTTP client of the connector's AWS clients: hyper with rustls on ring.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

impl ClientCache {
    pub fn new(sdk: &SdkConfig) -> Self {
        let mut base = sdk.to_builder().retry_config(retry_config()).timeout_config(timeout_config());
        // The deployment's endpoint override (e.g. DynamoDB's local server) is not this hub's: only the hub's
        // own `endpointUrl` / `dataEndpointUrl` settings move its calls.
        base.set_endpoint_url(None);
        // A deployment's config normally has its HTTP client; one without gets ours (rustls on ring).
        if sdk.http_client().is_none() {
            base = base.http_client(http_client());
        }
        // So too its clock and timer (STS credentials for `roleArn` expire and are refreshed by them).
        if sdk.time_source().is_none() {
            base = base.time_source(aws_smithy_async::time::SystemTimeSource::new());
        }
        if sdk.sleep_impl().is_none() {
            base = base.sleep_impl(aws_smithy_async::rt::sleep::TokioSleep::new());
        }
        Self { base: base.build(), clients: Mutex::new(HashMap::new()) }
    }

    /// The clients for a hub at `host_name` with `settings`.
    pub async fn get(&self, host_name: &str, settings: &AwsSettings) -> HubClients {
        let key = Key {
            region: settings.region_for(host_name),
            role_arn: settings.role_arn.clone(),
            external_id: settings.external_id.clone(),
            endpoint_url: settings.endpoint_url.clone(),
            data_endpoint_url: settings.data_endpoint_url.clone().unwrap_or_else(|| format!("https://{host_name}")),
            sts_endpoint_url: settings.sts_endpoint_url.clone(),
        };
        if let Some(clients) = self.clients.lock().expect("client cache").get(&key) {
            return clients.clone();
        }
        let clients = self.build(&key).await;
        // Two cold callers may both build; either result is good, the map keeps one.
        self.clients.lock().expect("client cache").entry(key).or_insert(clients).clone()
    }

    async fn build(&self, key: &Key) -> HubClients {
        let mut config = self.base.to_builder();
        if let Some(region) = &key.region {
            config = config.region(Region::new(region.clone()));
        }
        if let Some(role) = &key.role_arn {
            let mut sts = self.base.to_builder();
            sts.set_endpoint_url(key.sts_endpoint_url.clone());
            let mut provider =
                AssumeRoleProvider::builder(role.clone()).session_name(SESSION_NAME).configure(&sts.build());
            if let Some(region) = &key.region {
                provider = provider.region(Region::new(region.clone()));
            }
            if let Some(id) = &key.external_id {
                provider = provider.external_id(id.clone());
            }
            // One cache for both clients of this hub: one AssumeRole, refreshed before the credentials expire.
            config = config
                .credentials_provider(SharedCredentialsProvider::new(provider.build().await))
                .identity_cache(aws_config::identity::IdentityCache::lazy().build());
        }
        let config = config.build();
        let mut iot = aws_sdk_iot::config::Builder::from(&config);
        if let Some(endpoint) = &key.endpoint_url {
            iot = iot.endpoint_url(endpoint);
        }
        let data = aws_sdk_iotdataplane::config::Builder::from(&config).endpoint_url(&key.data_endpoint_url);
        HubClients {
            iot: aws_sdk_iot::Client::from_conf(iot.build()),
            data: aws_sdk_iotdataplane::Client::from_conf(data.build()),
        }
    }
}

fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}
