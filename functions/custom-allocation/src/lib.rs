//! Custom allocation for the provisioning service: WebAssembly policies run in a wasmtime sandbox (fuel, epoch
//! deadline, memory and output limits per call) and Azure-style HTTP webhooks, behind the core's
//! `CustomAllocator` and `PolicyRegistry` ports. See docs/custom-allocation.md and policies/ABI.md.
//!
//! Plug it into the service:
//!
//! ```ignore
//! let policies = Arc::new(PolicyAllocator::new(Arc::new(DirStorage::new(data_dir.join("policies"))), PolicySettings::default())?);
//! let dps = Dps::new(store, settings).with_allocator(policies.clone()).with_policies(policies);
//! ```

mod allocator;
pub mod codes;
mod limits;
#[cfg(feature = "s3")]
pub mod s3;
pub mod sandbox;
pub mod storage;
pub mod webhook;

pub use allocator::{PolicyAllocator, PolicySettings};
pub use limits::{EPOCH_TICK, Limits, MemoryLimitExceeded};
pub use sandbox::{ABI_VERSION, Compiled, ModuleError, Run, Sandbox};
pub use storage::{DirStorage, ModuleStorage};
pub use webhook::{SIGNATURE_HEADER, WebhookSettings, Webhooks};
