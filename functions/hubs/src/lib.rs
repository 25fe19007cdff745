//! Hub registry connectors: each implements `dps_core::hubs::HubConnector` for one `HubKind`.
//!
//! - [`aws`]: AWS IoT Core (`HubKind::AwsIotCore`), over aws-sdk-iot and aws-sdk-iotdataplane
//!   (docs/hub-aws-iot-core.md).

pub mod aws;
