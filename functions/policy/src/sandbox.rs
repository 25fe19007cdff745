//! The WebAssembly sandbox: one engine with fuel and epoch interruption, module validation and compilation,
//! a compiled-module cache keyed by content hash, and one limited call per registration.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dps_core::allocator::AllocationFailure;
use dps_core::policy::PolicyTrace;
use sha2::{Digest, Sha256};
use wasmtime::{
    Caller, Config, Engine, Extern, ExternType, FuncType, InstancePre, Linker, Module, OptLevel, Trap, TypedFunc,
    ValType,
};

use crate::codes::{self, failure};
use crate::limits::LOG_LINE_BYTES;
pub use crate::limits::Logs;
use crate::limits::{CallState, EPOCH_TICK, Limits, MemoryLimitExceeded, TABLE_ELEMENTS, limited_store};

/// ABI version this host speaks (see policies/ABI.md).
pub const ABI_VERSION: u32 = 1;
/// Compiled modules kept in memory.
const CACHE_ENTRIES: usize = 128;

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
}

/// The result of one call: the guest's raw answer or a failure, and what the call cost.
pub struct Run {
    /// The answer bytes (bounded), or why there is none.
    pub output: Result<Vec<u8>, AllocationFailure>,
    /// Fuel, time, memory and logs.
    pub trace: PolicyTrace,
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
        linker.func_wrap("dps", "log", host_log)?;
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

    fn validate(&self, bytes: &[u8], sha256: String) -> Result<Compiled, ModuleError> {
        let invalid = |msg: String| ModuleError::Invalid(msg);
        let module = Module::from_binary(&self.engine, bytes).map_err(|e| {
            invalid(format!("The module is not valid WebAssembly within the sandbox limits: {}", root_cause(&e)))
        })?;
        let mut imports = Vec::new();
        for import in module.imports() {
            let name = format!("{}.{}", import.module(), import.name());
            let log_type = FuncType::new(&self.engine, [ValType::I32, ValType::I32], []);
            match import.ty() {
                ExternType::Func(ty) if name == "dps.log" && FuncType::eq(&ty, &log_type) => {}
                _ if name == "dps.log" => {
                    return Err(invalid("The import dps.log must be (func (param i32 i32))".into()));
                }
                _ if import.module().starts_with("wasi") => {
                    return Err(invalid(format!(
                        "The module imports WASI ({name}); policies may not use WASI: build for \
                         wasm32-unknown-unknown with the policy SDK"
                    )));
                }
                _ => {
                    return Err(invalid(format!(
                        "The module imports {name}, which the host does not provide (only dps.log)"
                    )));
                }
            }
            imports.push(name);
        }
        let required: [(&str, &[ValType], &[ValType]); 3] = [
            ("dps_abi_version", &[], &[ValType::I32]),
            ("dps_alloc", &[ValType::I32], &[ValType::I32]),
            ("dps_allocate", &[ValType::I32, ValType::I32], &[ValType::I64]),
        ];
        for (name, params, results) in required {
            let want = FuncType::new(&self.engine, params.iter().cloned(), results.iter().cloned());
            match module.get_export(name) {
                Some(ExternType::Func(ty)) if FuncType::eq(&ty, &want) => {}
                Some(_) => return Err(invalid(format!("The export '{name}' must be {}", describe(params, results)))),
                None => {
                    return Err(invalid(format!(
                        "The module is missing the export '{name}' ({})",
                        describe(params, results)
                    )));
                }
            }
        }
        if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
            return Err(invalid("The module is missing the export 'memory' (its linear memory)".into()));
        }
        let exports = module.exports().map(|e| e.name().to_string()).collect();
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| invalid(format!("The module cannot be linked: {}", root_cause(&e))))?;
        let abi_version = self.abi_version(&pre)?;
        if abi_version != ABI_VERSION {
            return Err(invalid(format!(
                "The module declares ABI version {abi_version}; this host speaks version {ABI_VERSION}"
            )));
        }
        Ok(Compiled { sha256, size: bytes.len() as u64, exports, imports, abi_version, pre })
    }

    /// Instantiate under the call limits and ask the module its ABI version (also proves it instantiates).
    fn abi_version(&self, pre: &InstancePre<CallState>) -> Result<u32, ModuleError> {
        let fail = |e: wasmtime::Error| {
            ModuleError::Invalid(format!("The module fails to start under the call limits: {}", describe_error(&e)))
        };
        let mut store = limited_store(&self.engine, &self.limits).map_err(fail)?;
        let instance = pre.instantiate(&mut store).map_err(fail)?;
        let version = instance.get_typed_func::<(), i32>(&mut store, "dps_abi_version").map_err(fail)?;
        let version = version.call(&mut store, ()).map_err(fail)?;
        Ok(u32::try_from(version).unwrap_or(0))
    }

    /// Create a limited store and instantiate the module, nothing else (to measure instantiation).
    pub fn instantiate_only(&self, compiled: &Compiled) -> wasmtime::Result<()> {
        let mut store = limited_store(&self.engine, &self.limits)?;
        compiled.pre.instantiate(&mut store).map(drop)
    }

    /// Run the policy on `input` under the limits: instantiate, copy the request in, call, copy the answer out.
    pub fn run(&self, compiled: &Compiled, input: &[u8]) -> Run {
        let started = Instant::now();
        let limits = &self.limits;
        let mut trace = PolicyTrace { fuel_limit: limits.fuel, ..PolicyTrace::default() };
        let mut store = match limited_store(&self.engine, limits) {
            Ok(store) => store,
            Err(e) => {
                let output = Err(failure(codes::POLICY_HOST, format!("The sandbox could not start: {e}")));
                return Run { output, trace };
            }
        };
        let output = call(&mut store, compiled, input, limits);
        trace.fuel_consumed = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        trace.duration_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let state = store.into_data();
        trace.peak_memory_bytes = state.limiter.peak_memory as u64;
        trace.logs = state.logs.lines;
        trace.logs_truncated = state.logs.truncated;
        let output = output.map_err(|e| classify(&e, limits, &trace.logs));
        Run { output, trace }
    }
}

/// An error of the guest's making, as opposed to one the host raises while calling it.
#[derive(Debug, thiserror::Error)]
enum GuestError {
    #[error("its answer of {0} bytes exceeds the {1}-byte output limit")]
    OutputTooLarge(usize, usize),
    #[error("its answer points outside its memory")]
    OutputOutOfBounds,
    #[error("dps_alloc returned a buffer outside its memory")]
    InputOutOfBounds,
    #[error("the request of {0} bytes exceeds the {1}-byte input limit")]
    InputTooLarge(usize, usize),
}

fn call(
    store: &mut wasmtime::Store<CallState>,
    compiled: &Compiled,
    input: &[u8],
    limits: &Limits,
) -> wasmtime::Result<Vec<u8>> {
    if input.len() > limits.input_bytes {
        return Err(wasmtime::Error::new(GuestError::InputTooLarge(input.len(), limits.input_bytes)));
    }
    let instance = compiled.pre.instantiate(&mut *store)?;
    let memory = instance
        .get_memory(&mut *store, "memory")
        .ok_or_else(|| wasmtime::Error::msg("the module has no memory export"))?;
    let alloc: TypedFunc<i32, i32> = instance.get_typed_func(&mut *store, "dps_alloc")?;
    let allocate: TypedFunc<(i32, i32), i64> = instance.get_typed_func(&mut *store, "dps_allocate")?;
    let len = i32::try_from(input.len()).unwrap_or(i32::MAX);
    let ptr = alloc.call(&mut *store, len)?;
    let start = usize::try_from(ptr as u32).unwrap_or(usize::MAX);
    memory.write(&mut *store, start, input).map_err(|_| wasmtime::Error::new(GuestError::InputOutOfBounds))?;
    let packed = allocate.call(&mut *store, (ptr, len))? as u64;
    let (out_ptr, out_len) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
    if out_len > limits.output_bytes {
        return Err(wasmtime::Error::new(GuestError::OutputTooLarge(out_len, limits.output_bytes)));
    }
    let data = memory.data(&*store);
    let end = out_ptr.checked_add(out_len).ok_or_else(|| wasmtime::Error::new(GuestError::OutputOutOfBounds))?;
    data.get(out_ptr..end).map(<[u8]>::to_vec).ok_or_else(|| wasmtime::Error::new(GuestError::OutputOutOfBounds))
}

/// `dps.log(ptr, len)`: keep a line of the guest's memory, within the log bounds. Bad pointers are ignored.
fn host_log(mut caller: Caller<'_, CallState>, ptr: i32, len: i32) {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else { return };
    let (start, len) = (ptr as u32 as usize, (len as u32 as usize).min(LOG_LINE_BYTES));
    let line = memory.data(&caller).get(start..start.saturating_add(len)).map(<[u8]>::to_vec);
    if let Some(line) = line {
        caller.data_mut().logs.push(&line);
    }
}

/// Map a failed call to the registration's error code and message.
fn classify(error: &wasmtime::Error, limits: &Limits, logs: &[String]) -> AllocationFailure {
    if let Some(limit) = error.downcast_ref::<MemoryLimitExceeded>() {
        return failure(
            codes::POLICY_MEMORY,
            format!("Custom allocation policy exceeded its memory limit of {} bytes", limit.limit),
        );
    }
    if error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
        return failure(codes::POLICY_HOST, "The policy sandbox is at capacity; retry");
    }
    if let Some(guest) = error.downcast_ref::<GuestError>() {
        let code = match guest {
            GuestError::OutputTooLarge(..) => codes::POLICY_OUTPUT_TOO_LARGE,
            GuestError::InputTooLarge(..) => codes::POLICY_HOST,
            _ => codes::POLICY_BAD_OUTPUT,
        };
        return failure(code, format!("Custom allocation policy failed: {guest}"));
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => {
            failure(codes::POLICY_FUEL, format!("Custom allocation policy ran out of fuel ({} units)", limits.fuel))
        }
        Some(Trap::Interrupt) => failure(
            codes::POLICY_DEADLINE,
            format!("Custom allocation policy exceeded its deadline of {} ms", limits.deadline.as_millis()),
        ),
        Some(Trap::StackOverflow) => {
            failure(codes::POLICY_TRAP, "Custom allocation policy trapped: call stack exhausted")
        }
        Some(trap) => {
            let panic = logs.iter().rev().find(|l| l.starts_with("panic: "));
            let message = match panic {
                // The guest wrote this line: keep it printable and short before it reaches a device.
                Some(line) => {
                    let line: String = line.chars().filter(|c| !c.is_control()).take(256).collect();
                    format!("Custom allocation policy trapped: {line}")
                }
                None => format!("Custom allocation policy trapped: {trap}"),
            };
            failure(codes::POLICY_TRAP, message)
        }
        None => failure(codes::POLICY_TRAP, format!("Custom allocation policy failed: {}", root_cause(error))),
    }
}

fn describe_error(error: &wasmtime::Error) -> String {
    if let Some(limit) = error.downcast_ref::<MemoryLimitExceeded>() {
        return limit.to_string();
    }
    match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => root_cause(error),
    }
}

fn root_cause(error: &wasmtime::Error) -> String {
    error.chain().last().map(|e| e.to_string()).unwrap_or_else(|| error.to_string())
}

fn describe(params: &[ValType], results: &[ValType]) -> String {
    let list = |types: &[ValType]| types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" ");
    let mut text = String::from("func");
    if !params.is_empty() {
        text.push_str(&format!(" (param {})", list(params)));
    }
    if !results.is_empty() {
        text.push_str(&format!(" (result {})", list(results)));
    }
    text
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A rough duration helper for traces and measurements.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
