//! Typed configuration, read once at start from a lookup function (the environment in binaries, a map in
//! tests), and the SDK settings every client of this store uses.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::Client;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::DynamoStore;

/// Name of the table (required).
pub const TABLE_NAME_VAR: &str = "DPS_TABLE_NAME";
/// Endpoint override, e.g. `http://127.0.0.1:5000` for a local DynamoDB API server (moto).
pub const ENDPOINT_VAR: &str = "DPS_DYNAMODB_ENDPOINT";
/// Region; when absent the SDK's usual chain decides (`AWS_REGION` is set on Lambda).
pub const REGION_VAR: &str = "AWS_REGION";
/// Attempts per DynamoDB call, first one included (standard retry mode, exponential backoff with jitter).
pub const MAX_ATTEMPTS_VAR: &str = "DPS_DYNAMODB_MAX_ATTEMPTS";
/// Static credentials (with `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`); Lambda sets them.
pub const ACCESS_KEY_VAR: &str = "AWS_ACCESS_KEY_ID";
/// See [`ACCESS_KEY_VAR`].
pub const SECRET_KEY_VAR: &str = "AWS_SECRET_ACCESS_KEY";
/// See [`ACCESS_KEY_VAR`].
pub const SESSION_TOKEN_VAR: &str = "AWS_SESSION_TOKEN";
/// Days daily operation counters are kept after their day (DynamoDB TTL); absent: kept for ever.
pub const COUNTER_RETENTION_VAR: &str = "DPS_COUNTER_RETENTION_DAYS";

/// Default attempts per call.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// First backoff of the retry schedule (DynamoDB recommends tens of milliseconds, not the SDK's 1 s default).
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
/// Longest single backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one attempt (a DynamoDB call normally takes milliseconds).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);
/// Timeout of one call, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// A configuration value is missing or malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable has a value that cannot be used.
    #[error("{name} has an invalid value '{value}': {why}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// How to reach the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoConfig {
    /// Table name.
    pub table_name: String,
    /// Endpoint override (local servers); `None` uses the regional AWS endpoint.
    pub endpoint_url: Option<String>,
    /// Region override.
    pub region: Option<String>,
    /// Attempts per call, at least 1.
    pub max_attempts: u32,
    /// How long operation counters are kept after their day.
    pub counter_retention: Option<Duration>,
    /// Credentials read with the rest; `None` leaves them to the SDK's default chain (profile, IMDS, ECS...).
    pub credentials: Option<StaticCredentials>,
}

/// Access key, secret and session token.
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// Access key ID.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials").field("access_key_id", &self.access_key_id).finish_non_exhaustive()
    }
}

impl DynamoConfig {
    /// A configuration for `table_name` with defaults.
    pub fn new(table_name: impl Into<String>) -> Self {
        Self {
            table_name: table_name.into(),
            endpoint_url: None,
            region: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            counter_retention: None,
            credentials: None,
        }
    }

    /// Read the configuration through `lookup` (e.g. `|k| std::env::var(k).ok()`).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let table_name = get(TABLE_NAME_VAR).ok_or(ConfigError::Missing(TABLE_NAME_VAR))?;
        if !valid_table_name(&table_name) {
            return Err(ConfigError::Invalid {
                name: TABLE_NAME_VAR,
                value: table_name,
                why: "3 to 255 of letters, digits, _ - .",
            });
        }
        let endpoint_url = get(ENDPOINT_VAR);
        if let Some(url) = &endpoint_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid { name: ENDPOINT_VAR, value: url.clone(), why: "not an http(s) URL" });
        }
        let number = |name: &'static str, min: u32| -> Result<Option<u32>, ConfigError> {
            get(name)
                .map(|v| match v.parse::<u32>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => Err(ConfigError::Invalid { name, value: v, why: "not a whole number in range" }),
                })
                .transpose()
        };
        Ok(Self {
            table_name,
            endpoint_url,
            region: get(REGION_VAR),
            max_attempts: number(MAX_ATTEMPTS_VAR, 1)?.unwrap_or(DEFAULT_MAX_ATTEMPTS),
            counter_retention: number(COUNTER_RETENTION_VAR, 1)?.map(|d| Duration::from_secs(u64::from(d) * 86_400)),
            credentials: match (get(ACCESS_KEY_VAR), get(SECRET_KEY_VAR)) {
                (Some(access_key_id), Some(secret_access_key)) => {
                    Some(StaticCredentials { access_key_id, secret_access_key, session_token: get(SESSION_TOKEN_VAR) })
                }
                _ => None,
            },
        })
    }

    /// The SDK configuration: credentials from the lookup when it has them (Lambda's environment does), else
    /// from the SDK's default chain; region from the lookup or the chain; with this store's HTTP client, retry and timeout settings and the endpoint override.
    pub async fn sdk_config(&self) -> SdkConfig {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client())
            .retry_config(retry_config(self.max_attempts))
            .timeout_config(timeout_config());
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(c) = &self.credentials {
            let credentials =
                Credentials::new(&c.access_key_id, &c.secret_access_key, c.session_token.clone(), None, "dps-config");
            loader = loader.credentials_provider(credentials);
        }
        loader.load().await
    }

    /// The store over a client built from `sdk`.
    pub fn store(&self, sdk: &SdkConfig) -> DynamoStore {
        DynamoStore::new(Client::new(sdk), &self.table_name).with_counter_retention(self.counter_retention)
    }

    /// Build the client and the store (once, at cold start).
    pub async fn connect(&self) -> DynamoStore {
        self.store(&self.sdk_config().await)
    }
}

/// The HTTP client: hyper 1 with rustls on ring (no aws-lc, no OpenSSL).
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
}

/// Standard retry mode (throttling and transient errors, exponential backoff with full jitter).
pub fn retry_config(max_attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(max_attempts.max(1))
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

/// Connect, attempt and operation timeouts.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<DynamoConfig, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        DynamoConfig::from_env(|k| map.get(k).cloned())
    }

    #[test]
    fn reads_typed_config() {
        let config = from(&[
            (TABLE_NAME_VAR, "dps"),
            (ENDPOINT_VAR, "http://127.0.0.1:5000"),
            (REGION_VAR, "eu-west-1"),
            (MAX_ATTEMPTS_VAR, "6"),
            (COUNTER_RETENTION_VAR, "400"),
            (ACCESS_KEY_VAR, "AKID"),
            (SECRET_KEY_VAR, "secret"),
        ])
        .unwrap();
        let credentials = config.credentials.clone().expect("credentials");
        assert_eq!((credentials.access_key_id.as_str(), credentials.session_token.as_deref()), ("AKID", None));
        assert!(!format!("{credentials:?}").contains("secret"), "secrets stay out of logs");
        assert_eq!(config.table_name, "dps");
        assert_eq!(config.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.max_attempts, 6);
        assert_eq!(config.counter_retention, Some(Duration::from_secs(400 * 86_400)));
        let defaults = from(&[(TABLE_NAME_VAR, "dps")]).unwrap();
        assert_eq!(defaults, DynamoConfig::new("dps"));
    }

    #[test]
    fn rejects_bad_config() {
        assert_eq!(from(&[]), Err(ConfigError::Missing(TABLE_NAME_VAR)));
        assert!(from(&[(TABLE_NAME_VAR, "a b")]).is_err());
        assert!(from(&[(TABLE_NAME_VAR, "dps"), (ENDPOINT_VAR, "localhost:5000")]).is_err());
        assert!(from(&[(TABLE_NAME_VAR, "dps"), (MAX_ATTEMPTS_VAR, "0")]).is_err());
        assert!(from(&[(TABLE_NAME_VAR, "dps"), (COUNTER_RETENTION_VAR, "soon")]).is_err());
    }
}
