//! One limited call of a policy: a fresh store under the limits, the request copied into the guest, its answer
//! copied out within bounds, and what the call cost.

use std::time::Instant;

use dps_core::allocator::AllocationFailure;
use dps_core::policy::PolicyTrace;
use wasmtime::{Caller, Extern, Trap, TypedFunc};

use super::failure::classify;
use super::{Compiled, Sandbox};
use crate::codes::{self, failure};
use crate::limits::{CallState, LOG_LINE_BYTES, Limits, limited_store};

/// The result of one call: the guest's raw answer or a failure, and what the call cost.
pub struct Run {
    /// The answer bytes (bounded), or why there is none.
    pub output: Result<Vec<u8>, AllocationFailure>,
    /// Fuel, time, memory and logs.
    pub trace: PolicyTrace,
}

impl Sandbox {
    /// Create a limited store and instantiate the module, nothing else (to measure instantiation).
    pub fn instantiate_only(&self, compiled: &Compiled) -> wasmtime::Result<()> {
        let mut store = limited_store(&self.engine, &self.limits, self.limits.fuel)?;
        compiled.pre.instantiate(&mut store).map(drop)
    }

    /// Run the policy on `input` under the limits: instantiate, copy the request in, call, copy the answer out.
    pub fn run(&self, compiled: &Compiled, input: &[u8]) -> Run {
        self.attempt(compiled, input, self.limits.fuel).0
    }

    /// Run the policy as [`Sandbox::run`] does but with only `fuel` (at most the fuel limit): `None` if that was
    /// not enough. A policy is a deterministic function of its input, so such a call can be run again from the
    /// start with `run`; every other outcome, success or failure, is the one `run` would give.
    pub fn run_short(&self, compiled: &Compiled, input: &[u8], fuel: u64) -> Option<Run> {
        let fuel = fuel.min(self.limits.fuel);
        let (run, out_of_fuel) = self.attempt(compiled, input, fuel);
        (!out_of_fuel || fuel == self.limits.fuel).then_some(run)
    }

    /// One call with `fuel`, every other limit as configured; also whether it ran out of fuel.
    fn attempt(&self, compiled: &Compiled, input: &[u8], fuel: u64) -> (Run, bool) {
        let started = Instant::now();
        let limits = &self.limits;
        let mut trace = PolicyTrace { fuel_limit: limits.fuel, ..PolicyTrace::default() };
        let mut store = match limited_store(&self.engine, limits, fuel) {
            Ok(store) => store,
            Err(e) => {
                let output = Err(failure(codes::POLICY_HOST, format!("The sandbox could not start: {e}")));
                return (Run { output, trace }, false);
            }
        };
        let output = call(&mut store, compiled, input, limits);
        trace.fuel_consumed = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        trace.duration_micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let state = store.into_data();
        trace.peak_memory_bytes = state.limiter.peak_memory as u64;
        trace.logs = state.logs.lines;
        trace.logs_truncated = state.logs.truncated;
        let out_of_fuel = output.as_ref().is_err_and(|e| matches!(e.downcast_ref::<Trap>(), Some(Trap::OutOfFuel)));
        let output = output.map_err(|e| classify(&e, limits, &trace.logs));
        (Run { output, trace }, out_of_fuel)
    }
}

/// An error of the guest's making, as opposed to one the host raises while calling it.
#[derive(Debug, thiserror::Error)]
pub(super) enum GuestError {
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
    // The exports were checked by name and type at upload; only their indices are looked up here.
    let entry = &compiled.entry;
    let memory = instance
        .get_module_export(&mut *store, &entry.memory)
        .and_then(Extern::into_memory)
        .ok_or_else(|| wasmtime::Error::msg("the module has no memory export"))?;
    let function = |store: &mut wasmtime::Store<CallState>, export| {
        instance
            .get_module_export(&mut *store, export)
            .and_then(Extern::into_func)
            .ok_or_else(|| wasmtime::Error::msg("the module lacks an ABI function"))
    };
    let alloc: TypedFunc<i32, i32> = function(store, &entry.alloc)?.typed(&*store)?;
    let allocate: TypedFunc<(i32, i32), i64> = function(store, &entry.allocate)?.typed(&*store)?;
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
pub(super) fn host_log(mut caller: Caller<'_, CallState>, ptr: i32, len: i32) {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else { return };
    let (start, len) = (ptr as u32 as usize, (len as u32 as usize).min(LOG_LINE_BYTES));
    let line = memory.data(&caller).get(start..start.saturating_add(len)).map(<[u8]>::to_vec);
    if let Some(line) = line {
        caller.data_mut().logs.push(&line);
    }
}
