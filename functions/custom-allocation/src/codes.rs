//! The allocation error codes live in the core's one table ([`dps_core::allocator::codes`]); these build the
//! failures this crate reports.

use dps_core::allocator::AllocationFailure;
pub use dps_core::allocator::codes::*;

/// A failure with `code` and `message`.
pub fn failure(code: u32, message: impl Into<String>) -> AllocationFailure {
    AllocationFailure::new(code, message)
}

/// Azure's failure for a webhook that answered a non-2xx `status`.
pub fn webhook_status(status: u16) -> AllocationFailure {
    let code = if status == 401 { WEBHOOK_UNAUTHORIZED } else { WEBHOOK_STATUS };
    failure(code, format!("Custom allocation failed with status code: {status}"))
}
