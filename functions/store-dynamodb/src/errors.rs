//! SDK errors mapped onto the domain's errors. Callers see short, safe messages; details go to the log.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::CancellationReason;
use dps_core::Error;

/// Seconds a throttled caller is told to wait (the SDK has already backed off through its retries).
pub const THROTTLED_RETRY_AFTER_SECS: u32 = 1;

/// Error codes DynamoDB uses for throttling (the SDK retries them with backoff before we see them).
const THROTTLING_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
];

/// Cancellation reason codes of a transaction that mean "throttled".
const THROTTLING_REASONS: &[&str] = &["ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"];

pub(crate) fn throttled() -> Error {
    Error::Throttled {
        message: "The store is throttling requests; retry later".into(),
        retry_after_secs: THROTTLED_RETRY_AFTER_SECS,
    }
}

pub(crate) fn unavailable() -> Error {
    Error::Unavailable("The store is temporarily unavailable; retry".into())
}

/// Map an SDK error of operation `op` that is not a condition failure (those are mapped where the condition is
/// known).
pub(crate) fn sdk<E, R>(op: &'static str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            let message = service.err().message().unwrap_or_default();
            if THROTTLING_CODES.contains(&code) {
                tracing::warn!(op, code, "DynamoDB throttled the request after retries");
                return throttled();
            }
            if code == "ValidationException" && message.contains("Item size") {
                return Error::PayloadTooLarge("The entity is larger than the store accepts (400 KB)".into());
            }
            if matches!(code, "InternalServerError" | "ServiceUnavailable" | "ServiceUnavailableException") {
                tracing::warn!(op, code, reason = message, "DynamoDB transient failure after retries");
                return unavailable();
            }
            tracing::error!(op, code, reason = message, "DynamoDB request failed");
            Error::internal(format!("DynamoDB {op} failed: {code}: {message}"))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            tracing::warn!(op, error = %aws_smithy_types::error::display::DisplayErrorContext(&err), "DynamoDB unreachable");
            unavailable()
        }
        _ => {
            let detail = aws_smithy_types::error::display::DisplayErrorContext(&err).to_string();
            tracing::error!(op, error = %detail, "DynamoDB request could not be made");
            Error::internal(format!("DynamoDB {op} failed: {detail}"))
        }
    }
}

/// What a cancelled transaction says, item by item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancellation {
    /// The item at this index failed its condition.
    Condition(usize),
    /// Throttled; retrying later may succeed.
    Throttled,
    /// Another transaction touched the same items; retrying may succeed.
    Conflict,
    /// Anything else.
    Other,
}

/// Classify the cancellation reasons of a transaction (a condition failure wins over anything else).
pub(crate) fn classify(reasons: &[CancellationReason]) -> Cancellation {
    let code = |r: &CancellationReason| r.code().unwrap_or("None").to_string();
    if let Some(i) = reasons.iter().position(|r| code(r) == "ConditionalCheckFailed") {
        return Cancellation::Condition(i);
    }
    if reasons.iter().any(|r| THROTTLING_REASONS.contains(&code(r).as_str())) {
        return Cancellation::Throttled;
    }
    if reasons.iter().any(|r| code(r) == "TransactionConflict") {
        return Cancellation::Conflict;
    }
    Cancellation::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(code: &str) -> CancellationReason {
        CancellationReason::builder().code(code).build()
    }

    #[test]
    fn cancellations() {
        assert_eq!(classify(&[reason("None"), reason("ConditionalCheckFailed")]), Cancellation::Condition(1));
        assert_eq!(classify(&[reason("ThrottlingError"), reason("None")]), Cancellation::Throttled);
        assert_eq!(classify(&[reason("TransactionConflict")]), Cancellation::Conflict);
        assert_eq!(classify(&[reason("ValidationError")]), Cancellation::Other);
    }
}
