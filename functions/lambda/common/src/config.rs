//! Typed configuration of a Lambda function, read once at cold start. Variable names match the single-machine
//! binary's (`DPS_REGION`, `DPS_CACHE_TTL`) and the DynamoDB store's (`DPS_TABLE_NAME`, `DPS_DYNAMODB_*`).

use std::time::Duration;

use dps_store_dynamodb::DynamoConfig;
use tracing_subscriber::EnvFilter;

/// Default staleness of cached instance configuration and enrollment groups.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(5);
/// Longest cache TTL the device function accepts: longer would let a revoked group key keep working too long.
pub const MAX_DEVICE_CACHE_TTL: Duration = Duration::from_secs(300);
/// Longest cache TTL the service function accepts. The service API authenticates each call against the cached
/// instance's shared access policies, so this is how long a rotated or deleted access key keeps working in a
/// warm service function other than the one that changed it.
pub const MAX_SERVICE_CACHE_TTL: Duration = Duration::from_secs(5);

/// Which Lambda function is starting; the two accept different cache bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// The device endpoint (registration, status).
    Device,
    /// The service endpoint (enrollments, groups, records, configuration).
    Service,
}

impl Function {
    /// Name in log lines (`function` field).
    pub fn name(self) -> &'static str {
        match self {
            Function::Device => "device",
            Function::Service => "service",
        }
    }

    /// The front door its requests are counted under.
    pub fn front_door(self) -> dps_core::metrics::FrontDoor {
        match self {
            Function::Device => dps_core::metrics::FrontDoor::Device,
            Function::Service => dps_core::metrics::FrontDoor::Service,
        }
    }

    /// Longest `DPS_CACHE_TTL` this function accepts.
    pub fn max_cache_ttl(self) -> Duration {
        match self {
            Function::Device => MAX_DEVICE_CACHE_TTL,
            Function::Service => MAX_SERVICE_CACHE_TTL,
        }
    }
}

/// Environment variables read here (template.yaml sets them; `cargo lambda watch --env-vars` locally). The
/// store's own (`DPS_TABLE_NAME`, `DPS_DYNAMODB_ENDPOINT`, `DPS_DYNAMODB_MAX_ATTEMPTS`,
/// `DPS_COUNTER_RETENTION_DAYS`, `AWS_REGION`) are read by [`DynamoConfig::from_env`].
pub mod vars {
    /// Region this deployment serves from, for the lowest-latency policy (default: `AWS_REGION`).
    pub const SERVING_REGION: &str = "DPS_REGION";
    /// Seconds the warm function may serve instance configuration and groups from memory
    /// (at most [`super::Function::max_cache_ttl`]).
    pub const CACHE_TTL: &str = "DPS_CACHE_TTL";
    /// `tracing` filter, e.g. `info` or `info,dps_core=debug`.
    pub const LOG_LEVEL: &str = "DPS_LOG_LEVEL";
    /// S3 bucket holding custom allocation policy modules; without it the `custom` policy is refused.
    pub const POLICY_BUCKET: &str = "DPS_POLICY_BUCKET";
    /// S3 endpoint override for local runs (moto); never set on AWS.
    pub const S3_ENDPOINT: &str = "DPS_S3_ENDPOINT";
    /// Where device certificates arrive: `none` (default: a function URL carries none), `api-gateway` (an HTTP
    /// API custom domain with mutual TLS) or `alb` (an ALB in mTLS passthrough mode).
    pub const CLIENT_CERTIFICATES: &str = "DPS_CLIENT_CERTIFICATES";
    /// KMS key (ID, ARN or alias) sealing hub connector credentials; without it hubs cannot be linked with
    /// credentials.
    pub const SECRETS_KMS_KEY: &str = "DPS_SECRETS_KMS_KEY";
    /// KMS endpoint override for local runs (moto); never set on AWS.
    pub const KMS_ENDPOINT: &str = "DPS_KMS_ENDPOINT";
    /// `true`: AWS IoT Core hubs may name their own endpoints (`endpointUrl`, `dataEndpointUrl`, `stsEndpointUrl`)
    /// and HTTP registry hubs private or loopback URLs, for local runs against emulators; never set on AWS (an
    /// instance owner's endpoint would get requests signed with the function's credentials, or reach the VPC).
    pub const HUB_ENDPOINT_OVERRIDES: &str = "DPS_HUB_ENDPOINT_OVERRIDES";
    /// Base URL every Azure IoT Hub registry call goes to instead of `https://{HostName}` (tokens are still signed
    /// for the HostName): a local registry stand-in, for local runs only; never set on AWS.
    pub const AZURE_HUB_ENDPOINT: &str = "DPS_AZURE_HUB_ENDPOINT";
    /// EventBridge bus (name or ARN) lifecycle events are put on; without it no events are sent.
    pub const EVENT_BUS: &str = "DPS_EVENT_BUS";
    /// EventBridge endpoint override for local runs (moto); never set on AWS.
    pub const EVENTS_ENDPOINT: &str = "DPS_EVENTS_ENDPOINT";
    /// CloudWatch namespace of the Embedded Metric Format lines (`emf.rs`); unset, no metrics are written.
    pub const METRICS_NAMESPACE: &str = "DPS_METRICS_NAMESPACE";
    /// Region of the AWS clients; the Lambda service sets it.
    pub const AWS_REGION: &str = "AWS_REGION";
}

/// What a Lambda function needs to know about its deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    /// How to reach the table.
    pub dynamo: DynamoConfig,
    /// Region this deployment serves from.
    pub serving_region: Option<String>,
    /// Staleness allowed for cached configuration.
    pub cache_ttl: Duration,
    /// `tracing` filter directive.
    pub log_filter: String,
    /// Policy module bucket.
    pub policy_bucket: Option<String>,
    /// S3 endpoint override (local runs only).
    pub s3_endpoint: Option<String>,
    /// The front door device certificates arrive through.
    pub client_certificates: dps_api::ClientCertificateSource,
    /// KMS key sealing hub connector credentials (`secrets::KmsSecretBox`).
    pub secrets_kms_key: Option<String>,
    /// KMS endpoint override (local runs only).
    pub kms_endpoint: Option<String>,
    /// Whether AWS IoT Core hubs may name their own endpoints and HTTP registries private URLs (local runs only).
    pub hub_endpoint_overrides: bool,
    /// Where Azure IoT Hub registry calls go instead of the hub's HostName (local runs only).
    pub azure_hub_endpoint: Option<String>,
    /// EventBridge bus for lifecycle events (`events::EventBridgeSink`).
    pub event_bus: Option<String>,
    /// EventBridge endpoint override (local runs only).
    pub events_endpoint: Option<String>,
    /// Namespace of the EMF metrics lines, if they are written.
    pub metrics_namespace: Option<String>,
    /// Whether the function may read the service API's access keys (the service function) or reads instances
    /// without them (the device function, whose role is refused the attribute that holds them).
    pub reads_access_keys: bool,
}

/// A configuration value that is missing or malformed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The store's part of the configuration.
    #[error(transparent)]
    Store(#[from] dps_store_dynamodb::ConfigError),
    /// A variable is set to something unusable.
    #[error("{name}: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
}

impl FunctionConfig {
    /// Read `function`'s configuration from the process environment.
    pub fn from_env(function: Function) -> Result<Self, ConfigError> {
        Self::from_lookup(function, |name| std::env::var(name).ok())
    }

    /// Read `function`'s configuration through `lookup` (tests pass a map). Empty values count as unset.
    pub fn from_lookup(function: Function, lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let dynamo = DynamoConfig::from_env(&lookup)?;
        let get = |name: &str| lookup(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let serving_region = get(vars::SERVING_REGION).or_else(|| get(vars::AWS_REGION));
        let cache_ttl = match get(vars::CACHE_TTL) {
            None => DEFAULT_CACHE_TTL,
            Some(raw) => {
                let secs: u64 = raw.parse().map_err(|_| ConfigError::Invalid {
                    name: vars::CACHE_TTL,
                    reason: format!("'{raw}' is not a whole number of seconds"),
                })?;
                let ttl = Duration::from_secs(secs);
                let max = function.max_cache_ttl();
                if ttl > max {
                    return Err(ConfigError::Invalid {
                        name: vars::CACHE_TTL,
                        reason: format!("at most {} seconds for the {} function", max.as_secs(), function.name()),
                    });
                }
                ttl
            }
        };
        let log_filter = get(vars::LOG_LEVEL).unwrap_or_else(|| "info".into());
        if let Err(err) = EnvFilter::try_new(&log_filter) {
            return Err(ConfigError::Invalid { name: vars::LOG_LEVEL, reason: err.to_string() });
        }
        let s3_endpoint = get(vars::S3_ENDPOINT);
        if let Some(url) = &s3_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                name: vars::S3_ENDPOINT,
                reason: format!("'{url}' is not an http(s) URL"),
            });
        }
        let client_certificates = match get(vars::CLIENT_CERTIFICATES).unwrap_or_default().parse() {
            Ok(dps_api::ClientCertificateSource::Tls) => {
                return Err(ConfigError::Invalid {
                    name: vars::CLIENT_CERTIFICATES,
                    reason: "a Lambda function does no TLS itself: use api-gateway, alb or none".into(),
                });
            }
            Ok(source) => source,
            Err(reason) => return Err(ConfigError::Invalid { name: vars::CLIENT_CERTIFICATES, reason }),
        };
        Ok(Self {
            dynamo,
            serving_region,
            cache_ttl,
            log_filter,
            policy_bucket: get(vars::POLICY_BUCKET),
            s3_endpoint,
            client_certificates,
            secrets_kms_key: get(vars::SECRETS_KMS_KEY),
            kms_endpoint: get(vars::KMS_ENDPOINT),
            hub_endpoint_overrides: match get(vars::HUB_ENDPOINT_OVERRIDES).as_deref() {
                None | Some("false") => false,
                Some("true") => true,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: vars::HUB_ENDPOINT_OVERRIDES,
                        reason: format!("'{other}' is not true or false"),
                    });
                }
            },
            azure_hub_endpoint: get(vars::AZURE_HUB_ENDPOINT),
            event_bus: get(vars::EVENT_BUS),
            events_endpoint: get(vars::EVENTS_ENDPOINT),
            metrics_namespace: get(vars::METRICS_NAMESPACE),
            reads_access_keys: function == Function::Service,
        })
    }

    /// The core service's settings.
    pub fn settings(&self) -> dps_core::Settings {
        dps_core::Settings {
            serving_region: self.serving_region.clone(),
            cache_ttl: self.cache_ttl,
            ..dps_core::Settings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse_for(function: Function, pairs: &[(&str, &str)]) -> Result<FunctionConfig, ConfigError> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        FunctionConfig::from_lookup(function, |k| map.get(k).cloned())
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<FunctionConfig, ConfigError> {
        parse_for(Function::Device, pairs)
    }

    #[test]
    fn reads_the_hub_secrets_key() {
        let c =
            parse(&[("DPS_TABLE_NAME", "table"), ("DPS_SECRETS_KMS_KEY", "arn:aws:kms:eu-west-1:1:key/k")]).unwrap();
        assert_eq!(c.secrets_kms_key.as_deref(), Some("arn:aws:kms:eu-west-1:1:key/k"));
        assert_eq!(c.kms_endpoint, None);
        assert_eq!(parse(&[("DPS_TABLE_NAME", "table"), ("DPS_SECRETS_KMS_KEY", " ")]).unwrap().secrets_kms_key, None);
    }

    #[test]
    fn what_lambda_and_the_template_set_is_enough() {
        let c = parse(&[("DPS_TABLE_NAME", "dps-Table-1"), ("AWS_REGION", "eu-west-1")]).unwrap();
        assert_eq!(c.dynamo.table_name, "dps-Table-1");
        assert_eq!(c.dynamo.region.as_deref(), Some("eu-west-1"));
        assert_eq!(c.dynamo.endpoint_url, None, "on AWS the regional endpoint is used");
        assert_eq!(c.serving_region.as_deref(), Some("eu-west-1"), "serving region defaults to AWS_REGION");
        assert_eq!(c.cache_ttl, DEFAULT_CACHE_TTL);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.policy_bucket, None, "no bucket: custom allocation stays off");
        assert_eq!(c.s3_endpoint, None);
        assert_eq!(c.client_certificates, dps_api::ClientCertificateSource::None, "no certificate header honoured");
        assert_eq!(c.settings().cache_ttl, DEFAULT_CACHE_TTL);
    }

    #[test]
    fn every_variable_is_read() {
        let c = parse(&[
            ("DPS_TABLE_NAME", "t-1"),
            ("AWS_REGION", "us-east-1"),
            ("DPS_REGION", "eu-central-1"),
            ("DPS_CACHE_TTL", "30"),
            ("DPS_LOG_LEVEL", "info,dps_core=debug"),
            ("DPS_DYNAMODB_ENDPOINT", "http://127.0.0.1:5000"),
            ("DPS_POLICY_BUCKET", "policies"),
            ("DPS_S3_ENDPOINT", "http://127.0.0.1:5000"),
            ("DPS_CLIENT_CERTIFICATES", "api-gateway"),
        ])
        .unwrap();
        assert_eq!(c.client_certificates, dps_api::ClientCertificateSource::ApiGateway);
        for bad in ["tls", "header"] {
            let err = parse(&[("DPS_TABLE_NAME", "t-1"), ("DPS_CLIENT_CERTIFICATES", bad)]).unwrap_err();
            assert!(err.to_string().starts_with("DPS_CLIENT_CERTIFICATES:"), "{err}");
        }
        assert_eq!(c.serving_region.as_deref(), Some("eu-central-1"));
        assert_eq!(c.cache_ttl, Duration::from_secs(30));
        assert_eq!(c.log_filter, "info,dps_core=debug");
        assert_eq!(c.dynamo.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.policy_bucket.as_deref(), Some("policies"));
        assert_eq!(c.s3_endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.settings().serving_region.as_deref(), Some("eu-central-1"));
    }

    #[test]
    fn the_table_is_required() {
        assert!(matches!(parse(&[]), Err(ConfigError::Store(_))));
        assert!(matches!(parse(&[("DPS_TABLE_NAME", "  ")]), Err(ConfigError::Store(_))));
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let bad = [
            ("DPS_CACHE_TTL", "five"),
            ("DPS_CACHE_TTL", "-1"),
            ("DPS_CACHE_TTL", "301"),
            ("DPS_LOG_LEVEL", "info,=[["),
            ("DPS_S3_ENDPOINT", "127.0.0.1:5000"),
        ];
        for (name, value) in bad {
            match parse(&[("DPS_TABLE_NAME", "table"), (name, value)]) {
                Err(ConfigError::Invalid { name: got, .. }) => assert_eq!(got, name, "{name}={value}"),
                other => panic!("{name}={value} gave {other:?}"),
            }
        }
        let endpoint = parse(&[("DPS_TABLE_NAME", "table"), ("DPS_DYNAMODB_ENDPOINT", "localhost:8000")]);
        assert!(matches!(endpoint, Err(ConfigError::Store(_))), "{endpoint:?}");
    }

    #[test]
    fn zero_ttl_disables_the_cache() {
        let c = parse(&[("DPS_TABLE_NAME", "table"), ("DPS_CACHE_TTL", "0")]).unwrap();
        assert_eq!(c.cache_ttl, Duration::ZERO);
    }

    #[test]
    fn a_rotated_access_key_works_at_most_five_seconds_in_a_warm_service_function() {
        let service = |ttl: &str| parse_for(Function::Service, &[("DPS_TABLE_NAME", "table"), ("DPS_CACHE_TTL", ttl)]);
        assert_eq!(service("5").unwrap().settings().cache_ttl, Duration::from_secs(5));
        assert_eq!(service("0").unwrap().settings().cache_ttl, Duration::ZERO, "0: every call reads the instance");
        for too_long in ["6", "30", "300"] {
            match service(too_long) {
                Err(ConfigError::Invalid { name, reason }) => {
                    assert_eq!(name, "DPS_CACHE_TTL");
                    assert!(reason.contains("at most 5 seconds"), "{reason}");
                }
                other => panic!("the service function started with DPS_CACHE_TTL={too_long}: {other:?}"),
            }
        }
        let default = parse_for(Function::Service, &[("DPS_TABLE_NAME", "table")]).unwrap();
        assert!(default.cache_ttl <= MAX_SERVICE_CACHE_TTL);
        // The device function holds no access policy checks; its bound is about group keys.
        let device = parse_for(Function::Device, &[("DPS_TABLE_NAME", "table"), ("DPS_CACHE_TTL", "300")]);
        assert_eq!(device.unwrap().cache_ttl, MAX_DEVICE_CACHE_TTL);
    }
}
