//! The storage conformance suite of dps-core, on a fresh journal (fjall) store in a temporary directory per case.

use std::sync::Arc;

use dps_store_embedded::JournalStore;

dps_core::conformance_tests!(async {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = JournalStore::open(dir.path()).expect("open the journal store");
    (Arc::new(store), dir)
});
