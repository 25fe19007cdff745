//! The storage conformance suite of dps-core on `DynamoStore`, against a moto server.

mod support;

use std::sync::Arc;

dps_core::conformance_tests!(async { Arc::new(support::store().await) });
