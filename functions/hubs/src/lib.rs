//! Hub registry connectors: each implements `dps_core::hubs::HubConnector` for one `HubKind`.

// Azure IoT Hub and the HTTP registry contract, over one bounded, retrying HTTPS call (module rest).
pub mod azure;
pub mod http;
mod rest;
pub use azure::AzureIotHubConnector;
pub use http::HttpRegistryConnector;

pub use rest::Limits;
