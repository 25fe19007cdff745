//! What the connector tests share: a recording local server and an Azure IoT Hub registry fake on it.
#![allow(dead_code)]

pub mod azure_registry;
pub mod server;
