//! What the connector tests share: an HTTP client that records every request (AWS IoT Core; the moto server
//! is dps-test-support's); a recording local server and an Azure IoT Hub registry fake on it (Azure, HTTP
//! registry).
#![allow(dead_code)]

pub mod azure_registry;
pub mod record;
pub mod server;
