//! Core of the device provisioning service: the domain model, the use cases, and the ports that adapters
//! implement: [`store::Store`] (storage), [`allocator::CustomAllocator`] (custom allocation: webhook or wasm),
//! [`policy::PolicyRegistry`] (uploaded WebAssembly policies), [`hubs::HubConnector`] (a hub's device registry),
//! [`hubs::SecretBox`] (sealing hub credentials), [`events::EventSink`] (provisioning events) and
//! [`metrics::Metrics`] (counters and timings). It knows no HTTP framework, no AWS SDK and no WebAssembly runtime.

pub mod allocation;
pub mod allocator;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod error;
pub mod events;
pub mod hubs;
pub mod ids;
pub mod memory;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod sas;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod usecases;

pub use error::{Error, Result};
pub use usecases::{Caller, Dps, Settings};
