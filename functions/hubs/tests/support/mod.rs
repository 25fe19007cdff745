//! What the connector tests share: a moto server and an HTTP client that records every request (AWS IoT Core);
//! a recording local server and an Azure IoT Hub registry fake on it (Azure, HTTP registry).
#![allow(dead_code)]

pub mod azure_registry;
pub mod moto;
pub mod record;
pub mod server;
