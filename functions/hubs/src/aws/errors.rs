//! AWS SDK errors as hub failures. Messages name the operation, the thing and AWS's error code; AWS's own
//! message is kept except for authorization errors (it names the caller's role and account), and no message
//! ever carries credentials (the SDK's errors never contain them; we add none).

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use dps_core::hubs::{HubFailure, HubFailureKind};

/// Error codes meaning "slow down" (the SDK has already retried them with backoff).
const THROTTLING_CODES: &[&str] =
    &["ThrottlingException", "TooManyRequestsException", "Throttling", "RequestLimitExceeded"];
/// Error codes of a service that is failing rather than refusing; the device's retry may succeed.
const TRANSIENT_CODES: &[&str] =
    &["InternalFailureException", "InternalException", "ServiceUnavailableException", "InternalServerException"];
/// Error codes whose AWS message names the caller (role ARN, account): left out of our message.
const AUTHORIZATION_CODES: &[&str] = &[
    "AccessDeniedException",
    "UnauthorizedException",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
];
/// Longest piece of an AWS message we repeat.
const MAX_DETAIL: usize = 200;

/// The AWS error code of a service error, if the call got an answer.
pub(crate) fn code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> Option<&str> {
    match err {
        SdkError::ServiceError(service) => service.err().code(),
        _ => None,
    }
}

/// Whether the call was answered "no such resource".
pub(crate) fn is_not_found<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    code(err) == Some("ResourceNotFoundException")
}

/// `op` on `thing` failed with `err`.
pub(crate) fn failure<E, R>(op: &'static str, thing: &str, err: SdkError<E, R>) -> HubFailure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let what = format!("AWS IoT Core {op} for thing '{thing}'");
    match &err {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("UnknownError");
            let message = service.err().message().unwrap_or_default();
            tracing::warn!(op, thing, code, reason = message, "AWS IoT Core refused a call");
            if THROTTLING_CODES.contains(&code) {
                return HubFailure::new(
                    HubFailureKind::Throttled,
                    format!("{what} was throttled ({code}); retry later"),
                );
            }
            if TRANSIENT_CODES.contains(&code) {
                return HubFailure::new(
                    HubFailureKind::Unreachable,
                    format!("{what} failed at AWS ({code}); retry later"),
                );
            }
            if AUTHORIZATION_CODES.contains(&code) {
                return HubFailure::new(
                    HubFailureKind::Refused,
                    format!("{what} was not authorized ({code}): check the IAM permissions of the role this hub uses"),
                );
            }
            let detail: String = message.chars().take(MAX_DETAIL).collect();
            let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
            HubFailure::new(HubFailureKind::Refused, format!("{what} was refused ({code}){detail}"))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            tracing::warn!(op, thing, error = %DisplayErrorContext(&err), "AWS IoT Core unreachable");
            let why = match &err {
                SdkError::TimeoutError(_) => "timed out",
                SdkError::DispatchFailure(d) if d.is_timeout() => "timed out",
                SdkError::ResponseError(_) => "got an unreadable answer",
                _ => "could not connect",
            };
            HubFailure::new(HubFailureKind::Unreachable, format!("{what} {why}"))
        }
        _ => {
            // Construction failures (e.g. no credentials could be loaded) are the deployment's configuration.
            tracing::error!(op, thing, error = %DisplayErrorContext(&err), "AWS IoT Core call could not be made");
            HubFailure::new(
                HubFailureKind::NotConfigured,
                format!("{what} could not be made (credentials or region of the deployment)"),
            )
        }
    }
}

/// A failure of ours before any call (e.g. a twin attributes cannot represent).
pub(crate) fn refused(message: impl Into<String>) -> HubFailure {
    HubFailure::new(HubFailureKind::Refused, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iot::operation::create_thing::CreateThingError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn answered(code: &str, message: &str) -> SdkError<CreateThingError, Response> {
        let err = CreateThingError::generic(ErrorMetadata::builder().code(code).message(message).build());
        SdkError::service_error(err, Response::new(StatusCode::try_from(400).unwrap(), SdkBody::empty()))
    }

    #[test]
    fn service_errors_map_to_failure_kinds() {
        let f = failure("CreateThing", "d1", answered("ThrottlingException", "Rate exceeded"));
        assert_eq!(f.kind, HubFailureKind::Throttled);
        assert_eq!(
            f.message,
            "AWS IoT Core CreateThing for thing 'd1' was throttled (ThrottlingException); retry later"
        );
        let f = failure("CreateThing", "d1", answered("ServiceUnavailableException", "down"));
        assert_eq!(f.kind, HubFailureKind::Unreachable);
        let f = failure("CreateThing", "d1", answered("InvalidRequestException", "bad type"));
        assert_eq!(
            (f.kind, f.message.as_str()),
            (
                HubFailureKind::Refused,
                "AWS IoT Core CreateThing for thing 'd1' was refused (InvalidRequestException): bad type"
            )
        );
    }

    #[test]
    fn authorization_errors_do_not_repeat_the_callers_identity() {
        let aws_message =
            "User: arn:aws:sts::123456789012:assumed-role/dps-device/fn is not authorized to perform: iot:CreateThing";
        let f = failure("CreateThing", "d1", answered("AccessDeniedException", aws_message));
        assert_eq!(f.kind, HubFailureKind::Refused);
        assert!(f.message.contains("was not authorized (AccessDeniedException)"), "{}", f.message);
        assert!(!f.message.contains("123456789012") && !f.message.contains("assumed-role"), "{}", f.message);
    }

    #[test]
    fn long_aws_messages_are_cut() {
        let f = failure("CreateThing", "d1", answered("InvalidRequestException", &"x".repeat(1000)));
        assert!(f.message.len() < MAX_DETAIL + 100, "{}", f.message.len());
    }
}
