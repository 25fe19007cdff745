//! What a failed call means for the registration: each way a call can fail (memory, fuel, deadline, trap,
//! a bad answer, a full pool) mapped to its 4002xx code and a message fit for the device.

use dps_core::allocator::AllocationFailure;
use wasmtime::Trap;

use super::call::GuestError;
use crate::codes::{self, failure};
use crate::limits::{Limits, MemoryLimitExceeded};

/// Map a failed call to the registration's error code and message.
pub(super) fn classify(error: &wasmtime::Error, limits: &Limits, logs: &[String]) -> AllocationFailure {
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

pub(super) fn describe_error(error: &wasmtime::Error) -> String {
    if let Some(limit) = error.downcast_ref::<MemoryLimitExceeded>() {
        return limit.to_string();
    }
    match error.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => root_cause(error),
    }
}

pub(super) fn root_cause(error: &wasmtime::Error) -> String {
    error.chain().last().map(|e| e.to_string()).unwrap_or_else(|| error.to_string())
}
