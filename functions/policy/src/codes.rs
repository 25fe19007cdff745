//! Error codes of failed custom allocations (Azure's 4002xx family; see docs/custom-allocation.md).
//!
//! Azure documents 400207 ("Custom allocation failed with status code: 400") and 400209 (the same for 401);
//! the rest are ours, in ranges Azure has not been seen to use: 40024x for WebAssembly policies, 40026x for
//! webhooks.

use dps_core::allocator::AllocationFailure;

/// A webhook answered with a non-2xx status other than 401 (Azure's code, seen for 400).
pub const WEBHOOK_STATUS: u32 = 400_207;
/// A webhook answered 401 (Azure's code).
pub const WEBHOOK_UNAUTHORIZED: u32 = 400_209;

/// The definition names a policy that is not uploaded (never was, or was deleted).
pub const POLICY_NOT_FOUND: u32 = 400_240;
/// The policy refused the device (its message is the registration's error message).
pub const POLICY_REJECTED: u32 = 400_241;
/// The policy trapped (panic, `unreachable`, division by zero, stack overflow, out-of-bounds access...).
pub const POLICY_TRAP: u32 = 400_242;
/// The policy used up its fuel (instruction budget).
pub const POLICY_FUEL: u32 = 400_243;
/// The policy ran past its wall-clock deadline.
pub const POLICY_DEADLINE: u32 = 400_244;
/// The policy asked for more memory than a call may use.
pub const POLICY_MEMORY: u32 = 400_245;
/// The policy's answer is not valid JSON of the expected shape.
pub const POLICY_BAD_OUTPUT: u32 = 400_246;
/// The policy's answer is larger than the output bound.
pub const POLICY_OUTPUT_TOO_LARGE: u32 = 400_247;
/// The policy (or webhook) chose a hub that is not among the request's `linkedHubs`.
pub const HUB_NOT_LINKED: u32 = 400_248;
/// The policy could not be loaded or run for a reason of the host (storage, compilation); retry later.
pub const POLICY_HOST: u32 = 400_249;

/// The webhook did not answer within the connect or total timeout.
pub const WEBHOOK_TIMEOUT: u32 = 400_260;
/// The webhook could not be reached (DNS, connection, TLS).
pub const WEBHOOK_UNREACHABLE: u32 = 400_261;
/// The webhook's address is private, loopback or link-local and the instance does not allow that.
pub const WEBHOOK_FORBIDDEN_TARGET: u32 = 400_262;
/// The webhook's answer is not valid JSON of the expected shape.
pub const WEBHOOK_BAD_RESPONSE: u32 = 400_263;
/// The webhook's answer is larger than the response bound.
pub const WEBHOOK_RESPONSE_TOO_LARGE: u32 = 400_264;
/// The webhook URL is not acceptable (not https, has credentials, unparsable).
pub const WEBHOOK_BAD_URL: u32 = 400_265;

/// A failure with `code` and `message`.
pub fn failure(code: u32, message: impl Into<String>) -> AllocationFailure {
    AllocationFailure { code, message: message.into() }
}

/// Azure's failure for a webhook that answered a non-2xx `status`.
pub fn webhook_status(status: u16) -> AllocationFailure {
    let code = if status == 401 { WEBHOOK_UNAUTHORIZED } else { WEBHOOK_STATUS };
    failure(code, format!("Custom allocation failed with status code: {status}"))
}
