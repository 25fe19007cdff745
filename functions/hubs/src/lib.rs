//! Hub registry connectors: each implements `dps_core::hubs::HubConnector` for one `HubKind`.
//!
//! - [`aws`]: AWS IoT Core (`HubKind::AwsIotCore`), over aws-sdk-iot and aws-sdk-iotdataplane
//!   (docs/hub-aws-iot-core.md).
//! - [`azure`]: Azure IoT Hub (`HubKind::AzureIotHub`), the registry REST API with the hub's connection string
//!   (docs/hub-azure-iot-hub.md).
//! - [`http`]: any registry implementing our signed HTTP contract (`HubKind::HttpRegistry`,
//!   docs/hub-connectors.md).
//!
//! The Azure and HTTP connectors share one bounded, retrying HTTPS call (module `rest`).

pub mod aws;
pub mod azure;
pub mod http;
mod rest;
pub use azure::AzureIotHubConnector;
pub use http::HttpRegistryConnector;

pub use rest::Limits;
