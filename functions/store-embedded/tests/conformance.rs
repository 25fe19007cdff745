//! The storage conformance suite of dps-core, on a fresh embedded store in a temporary directory per case.

use std::sync::Arc;

use dps_store_embedded::EmbeddedStore;

dps_core::conformance_tests!(async {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = EmbeddedStore::open(dir.path()).expect("open the embedded store");
    (Arc::new(store), dir)
});
