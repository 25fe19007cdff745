//! The WebAssembly sandbox: one engine with fuel and epoch interruption, the compiled-module cache keyed by
//! content hash (here), module validation against the ABI (`module.rs`), one limited call per registration
//! (`call.rs`) and the classification of a failed call into the registration's error code (`failure.rs`).

mod call;
mod failure;
mod module;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, InstancePre, Linker, ModuleExport, OptLevel};

pub use self::call::Run;
pub use crate::limits::Logs;
use crate::limits::{CallState, EPOCH_TICK, Limits, TABLE_ELEMENTS};

/// ABI version this host speaks (see policies/ABI.md).
pub const ABI_VERSION: u32 = 1;
/// Compiled modules kept in memory.
const CACHE_ENTRIES: usize = 128;
/// Memory (and table) bytes a pool slot keeps mapped between calls, per slot; a call that used more has the rest
/// returned to the kernel. Policies built with the SDK use about 256 KiB.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// A validated, compiled module ready to instantiate.
pub struct Compiled {
    /// SHA-256 of the module bytes, lowercase hex.
    pub sha256: String,
    /// Module size in bytes.
    pub size: u64,
    /// Export names.
    pub exports: Vec<String>,
    /// Imports as `module.name`.
    pub imports: Vec<String>,
    /// The ABI version the module declares.
    pub abi_version: u32,
    pre: InstancePre<CallState>,
    entry: Entry,
}

/// The exports a call uses, found by name once at upload rather than on every call.
struct Entry {
    memory: ModuleExport,
    alloc: ModuleExport,
    allocate: ModuleExport,
}

/// Why an upload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    /// Over the module size limit.
    #[error("The module is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// Module size.
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// Not valid WebAssembly, or it breaks the ABI.
    #[error("{0}")]
    Invalid(String),
}

/// The engine, the linker with the one host function, and the compiled-module cache.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<CallState>,
    limits: Limits,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    modules: HashMap<String, Arc<Compiled>>,
    order: VecDeque<String>,
}

impl Sandbox {
    /// An engine with fuel and epoch interruption, its epoch ticker thread (stops when the engine is dropped),
    /// and the instance allocator: pooling with `pool_slots` slots (at most that many calls at once; the
    /// allocator's semaphore keeps callers within it), or on-demand when `pool_slots` is 0.
    ///
    /// Pooling measured ~3 us per instantiation against ~20 us on demand (docs/custom-allocation.md). Each slot
    /// reserves only twice the memory limit of address space (not wasmtime's 4 GiB default, which fails on
    /// Lambda arm64); cranelift then emits explicit bounds checks, which measured no slower here.
    pub fn new(limits: Limits, pool_slots: u32) -> wasmtime::Result<Self> {
        let mut config = Config::new();
        if pool_slots > 0 {
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            // Up to two tables per module: the pool holds two per slot, so a slot never waits on a table.
            pool.total_memories(pool_slots).total_tables(2 * pool_slots).total_core_instances(pool_slots);
            pool.max_memory_size(limits.memory_bytes).max_tables_per_module(2).table_elements(TABLE_ELEMENTS);
            // A slot's pages stay mapped between calls and are reset with memset (only the pages the call
            // touched, where the kernel offers PAGEMAP_SCAN): no madvise, and no page faults on the next call.
            pool.linear_memory_keep_resident(KEEP_RESIDENT_BYTES).table_keep_resident(KEEP_RESIDENT_BYTES);
            pool.pagemap_scan(wasmtime::Enabled::Auto);
            config.memory_reservation(2 * limits.memory_bytes as u64);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        config.consume_fuel(true);
        config.epoch_interruption(true);
        config.cranelift_opt_level(OptLevel::Speed);
        config.max_wasm_stack(512 << 10);
        let engine = Engine::new(&config)?;
        let weak = engine.weak();
        std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
        let mut linker = Linker::new(&engine);
        linker.func_wrap("dps", "log", call::host_log)?;
        Ok(Self { engine, linker, limits, cache: Mutex::new(Cache::default()) })
    }

    /// The limits calls run with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The compiled module for `sha256`, if cached.
    pub fn cached(&self, sha256: &str) -> Option<Arc<Compiled>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).modules.get(sha256).cloned()
    }

    /// Validate and compile `bytes` (or return the cached compilation of the same content).
    pub fn compile(&self, bytes: &[u8]) -> Result<Arc<Compiled>, ModuleError> {
        if bytes.len() > self.limits.module_bytes {
            return Err(ModuleError::TooLarge { size: bytes.len(), limit: self.limits.module_bytes });
        }
        let sha256 = sha256_hex(bytes);
        if let Some(hit) = self.cached(&sha256) {
            return Ok(hit);
        }
        let compiled = Arc::new(self.validate(bytes, sha256)?);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.order.len() >= CACHE_ENTRIES
            && let Some(old) = cache.order.pop_front()
        {
            cache.modules.remove(&old);
        }
        cache.order.push_back(compiled.sha256.clone());
        cache.modules.insert(compiled.sha256.clone(), compiled.clone());
        Ok(compiled)
    }
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A rough duration helper for traces and measurements.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
