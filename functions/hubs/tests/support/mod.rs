//! What the connector tests share: an HTTP client that records every request (AWS IoT Core; the moto server
//! is dps-test-support's); a recording local server and an Azure IoT Hub registry fake on it (Azure, HTTP
//! registry).
#![allow(dead_code)]

use std::time::Duration;

use dps_hubs::Limits;

pub mod azure_registry;
pub mod record;
pub mod server;

/// Connector limits for tests against local servers: half-second timeouts, three quick attempts, backoff capped
/// at `max_backoff`.
pub fn quick_limits(max_backoff: Duration) -> Limits {
    Limits {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        total: Duration::from_secs(3),
        attempts: 3,
        backoff: Duration::from_millis(10),
        max_backoff,
    }
}
