//! The storage conformance suite on the in-memory store (and proof that the macro works from another crate).

use std::sync::Arc;

use dps_core::memory::MemoryStore;

dps_core::conformance_tests!(async { Arc::new(MemoryStore::new()) });
