//! Hub registry connectors: each implements `dps_core::hubs::HubConnector` for one `HubKind`.

pub mod aws;
