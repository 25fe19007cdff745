//! Per-call and per-module limits of the sandbox, and the one function that applies them to a store.

use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, Store};

/// How long one epoch tick lasts; deadlines are rounded up to whole ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Limits of the sandbox. The defaults suit allocation policies (a few hundred thousand instructions each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fuel per call (about one unit per wasm instruction).
    pub fuel: u64,
    /// Wall-clock deadline per call (instantiation included), enforced with epochs.
    pub deadline: Duration,
    /// Linear memory a call may reach, in bytes.
    pub memory_bytes: usize,
    /// Largest answer a policy may return, in bytes.
    pub output_bytes: usize,
    /// Largest request handed to a policy, in bytes.
    pub input_bytes: usize,
    /// Log bytes kept per call.
    pub log_bytes: usize,
    /// Log lines kept per call.
    pub log_lines: usize,
    /// Largest module accepted at upload, in bytes.
    pub module_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: 20_000_000,
            deadline: Duration::from_millis(200),
            memory_bytes: 16 << 20,
            output_bytes: 64 << 10,
            input_bytes: 1 << 20,
            log_bytes: 4 << 10,
            log_lines: 32,
            module_bytes: 4 << 20,
        }
    }
}

impl Limits {
    /// The deadline in epoch ticks (at least one).
    fn deadline_ticks(&self) -> u64 {
        let ticks = self.deadline.as_micros().div_ceil(EPOCH_TICK.as_micros());
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}

/// Per-call state a store carries: its limiter and the policy's logs.
pub struct CallState {
    pub(crate) limiter: CallLimiter,
    pub(crate) logs: Logs,
}

/// A memory or table request past the per-call limit; found again by downcasting the call's error.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (asked for {asked})")]
pub struct MemoryLimitExceeded {
    /// The limit.
    pub limit: usize,
    /// What the module asked for.
    pub asked: usize,
}

/// Memory and table caps; remembers the peak memory for the trace. Going over traps at once (rather than
/// making `memory.grow` return -1) so the failure is reported as a memory failure, not as whatever the guest
/// does next.
pub(crate) struct CallLimiter {
    memory_bytes: usize,
    pub(crate) peak_memory: usize,
}

/// Most table elements a module may have (function references for indirect calls).
pub(crate) const TABLE_ELEMENTS: usize = 20_000;

impl ResourceLimiter for CallLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded { limit: self.memory_bytes, asked: desired }));
        }
        self.peak_memory = self.peak_memory.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > TABLE_ELEMENTS {
            return Err(wasmtime::Error::new(MemoryLimitExceeded { limit: TABLE_ELEMENTS, asked: desired }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        2
    }

    fn memories(&self) -> usize {
        1
    }
}

/// A fresh store for one call with every per-call limit applied: memory and tables (limiter), `fuel` (the fuel
/// limit, or less for a first attempt in place), epoch deadline, log bounds. The output and input bounds are
/// checked by the caller against the same `limits`.
pub(crate) fn limited_store(engine: &Engine, limits: &Limits, fuel: u64) -> wasmtime::Result<Store<CallState>> {
    let state = CallState {
        limiter: CallLimiter { memory_bytes: limits.memory_bytes, peak_memory: 0 },
        logs: Logs::new(limits.log_bytes, limits.log_lines),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    store.set_fuel(fuel.min(limits.fuel))?;
    store.set_epoch_deadline(limits.deadline_ticks());
    store.epoch_deadline_trap();
    Ok(store)
}

/// Policy logs of one call, bounded in lines and bytes.
pub struct Logs {
    pub(crate) lines: Vec<String>,
    bytes: usize,
    max_bytes: usize,
    max_lines: usize,
    pub(crate) truncated: bool,
}

impl Logs {
    pub(crate) fn new(max_bytes: usize, max_lines: usize) -> Self {
        Self { lines: Vec::new(), bytes: 0, max_bytes, max_lines, truncated: false }
    }

    pub(crate) fn push(&mut self, raw: &[u8]) {
        let raw = &raw[..raw.len().min(LOG_LINE_BYTES)];
        if self.lines.len() >= self.max_lines || self.bytes + raw.len() > self.max_bytes {
            self.truncated = true;
            return;
        }
        self.bytes += raw.len();
        self.lines.push(String::from_utf8_lossy(raw).into_owned());
    }
}

/// Longest log line kept, in bytes.
pub(crate) const LOG_LINE_BYTES: usize = 512;
