//! The conformance suite on the same transactions over redb's in-memory backend.

use std::sync::Arc;

use dps_store_embedded::EmbeddedStore;

dps_core::conformance_tests!(async { Arc::new(EmbeddedStore::in_memory().expect("in-memory store")) });
