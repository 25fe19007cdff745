//! The one error table: every failure, from the core or from the HTTP layer, becomes an HTTP status and an Azure
//! error body (`errorCode` = status x 1000 + sub-code). The body itself is rendered by the envelope layer
//! ([`crate::layers`]), which knows the request's tracking ID.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dps_core::Error;

/// Message shown for every 5xx: the detail goes to the log only.
const INTERNAL_MESSAGE: &str = "The service could not process the request; quote the tracking ID when reporting it";

/// A failure on its way to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Sub-code; `errorCode` = status x 1000 + sub.
    pub sub: u16,
    /// Message safe to show the caller.
    pub message: String,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u32>,
    /// Detail for the log only (5xx).
    pub detail: Option<String>,
    /// The TPM challenge's `authenticationKey` (base64), sent in the 401 body beside the error fields.
    pub authentication_key: Option<String>,
}

/// Sub-codes of the table (one per row, so a code names one situation).
mod sub {
    pub const INVALID: u16 = 4; // 400004
    pub const API_VERSION: u16 = 1; // 400001
    pub const MALFORMED_BODY: u16 = 2; // 400002
    pub const TOO_DEEP: u16 = 3; // 400003
    pub const UNAUTHORIZED: u16 = 2; // 401002 (Azure's code for a bad SAS or certificate)
    pub const TPM_CHALLENGE: u16 = 3; // 401003 (ours: the TPM challenge; clients read its authenticationKey)
    pub const NOT_FOUND: u16 = 1; // 404001
    pub const NO_ROUTE: u16 = 0; // 404000
    pub const METHOD: u16 = 1; // 405001
    pub const BODY_TIMEOUT: u16 = 1; // 408001
    pub const CONFLICT: u16 = 1; // 409001
    pub const PRECONDITION: u16 = 1; // 412001
    pub const TOO_LARGE: u16 = 1; // 413001
    pub const MEDIA_TYPE: u16 = 1; // 415001
    pub const THROTTLED: u16 = 1; // 429001 (Azure's "Operations are being throttled")
    pub const INTERNAL: u16 = 1; // 500001
    pub const UNAVAILABLE: u16 = 1; // 503001
}

impl ApiError {
    fn new(status: StatusCode, sub: u16, message: impl Into<String>) -> Self {
        Self { status, sub, message: message.into(), retry_after: None, detail: None, authentication_key: None }
    }

    /// The Azure `errorCode`: status x 1000 + sub-code.
    pub fn code(&self) -> u32 {
        u32::from(self.status.as_u16()) * 1000 + u32::from(self.sub)
    }

    /// 400: missing or unsupported `api-version`.
    pub fn api_version(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, sub::API_VERSION, message)
    }

    /// 400: a request that breaks a rule (same row as the core's `Invalid`).
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, sub::INVALID, message)
    }

    /// 400: the body is not JSON of the expected shape.
    pub fn malformed_body(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, sub::MALFORMED_BODY, message)
    }

    /// 400: the JSON body nests deeper than allowed.
    pub fn too_deep(limit: usize) -> Self {
        Self::new(StatusCode::BAD_REQUEST, sub::TOO_DEEP, format!("The JSON body nests deeper than {limit} levels"))
    }

    /// 413: the body is larger than allowed.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            sub::TOO_LARGE,
            if limit >= 1 << 20 && limit.is_multiple_of(1 << 20) {
                format!("The request body is larger than {} MiB", limit >> 20)
            } else {
                format!("The request body is larger than {} KB", limit / 1024)
            },
        )
    }

    /// 408: the client stopped sending the request body (the server cuts it off; see the `dps` binary).
    pub fn body_timeout() -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, sub::BODY_TIMEOUT, "The request body arrived too slowly")
    }

    /// 415: a body that is not `application/json`.
    pub fn media_type() -> Self {
        Self::media_type_of("application/json")
    }

    /// 415: a body that is not of the media type `expected`.
    pub fn media_type_of(expected: &str) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, sub::MEDIA_TYPE, format!("The request body must be {expected}"))
    }

    /// 404: no route matches.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, sub::NO_ROUTE, "No such resource")
    }

    /// 405: the route exists, the method does not.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, sub::METHOD, "The method is not allowed on this resource")
    }

    /// 500 with a detail for the log.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self { detail: Some(detail.into()), ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, sub::INTERNAL, "") }
            .sanitised()
    }

    /// For a response produced outside our handlers (router, limit layers): the row for its status.
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::NOT_FOUND => Self::no_route(),
            StatusCode::METHOD_NOT_ALLOWED => Self::method_not_allowed(),
            StatusCode::PAYLOAD_TOO_LARGE => Self::too_large(crate::bounds::MAX_BODY_BYTES),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::media_type(),
            StatusCode::BAD_REQUEST => Self::malformed_body("The request is malformed"),
            s if s.is_server_error() => Self::new(s, sub::INTERNAL, "").sanitised(),
            s => Self::new(s, 0, s.canonical_reason().unwrap_or("Request failed")),
        }
    }

    /// 5xx bodies say nothing internal.
    fn sanitised(mut self) -> Self {
        if self.status.is_server_error() {
            if self.detail.is_none() && !self.message.is_empty() {
                self.detail = Some(std::mem::take(&mut self.message));
            }
            self.message = INTERNAL_MESSAGE.to_string();
        }
        self
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::Invalid(m) => Self::invalid(m),
            Error::Unauthorized(m) => Self::new(StatusCode::UNAUTHORIZED, sub::UNAUTHORIZED, m),
            Error::NotFound(m) => Self::new(StatusCode::NOT_FOUND, sub::NOT_FOUND, m),
            Error::Conflict(m) => Self::new(StatusCode::CONFLICT, sub::CONFLICT, m),
            Error::PreconditionFailed(m) => Self::new(StatusCode::PRECONDITION_FAILED, sub::PRECONDITION, m),
            Error::PayloadTooLarge(m) => Self::new(StatusCode::PAYLOAD_TOO_LARGE, sub::TOO_LARGE, m),
            Error::Throttled { message, retry_after_secs } => Self {
                retry_after: Some(retry_after_secs.max(1)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, sub::THROTTLED, message)
            },
            Error::Unavailable(m) => {
                Self { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, sub::UNAVAILABLE, m) }
                    .sanitised()
            }
            Error::Internal(m) => Self::internal(m),
            challenge @ Error::TpmChallenge { .. } => {
                let message = challenge.to_string();
                let Error::TpmChallenge { authentication_key } = challenge else { unreachable!("matched above") };
                Self {
                    authentication_key: Some(authentication_key),
                    ..Self::new(StatusCode::UNAUTHORIZED, sub::TPM_CHALLENGE, message)
                }
            }
        }
    }
}

impl IntoResponse for ApiError {
    /// The status plus this error as a response extension; the envelope layer renders the Azure body.
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_variant_has_a_row() {
        let rows = [
            (Error::invalid("x"), 400_004),
            (Error::unauthorized("x"), 401_002),
            (Error::not_found("x"), 404_001),
            (Error::Conflict("x".into()), 409_001),
            (Error::PreconditionFailed("x".into()), 412_001),
            (Error::PayloadTooLarge("x".into()), 413_001),
            (Error::Throttled { message: "x".into(), retry_after_secs: 3 }, 429_001),
            (Error::Unavailable("x".into()), 503_001),
            (Error::internal("x"), 500_001),
        ];
        for (error, code) in rows {
            assert_eq!(ApiError::from(error).code(), code);
        }
    }

    #[test]
    fn server_errors_hide_their_detail() {
        let e = ApiError::from(Error::internal("table dps-prod: AccessDenied for role arn:aws:iam::123"));
        assert!(!e.message.contains("arn"));
        assert!(e.detail.unwrap().contains("AccessDenied"));
        let e = ApiError::from(Error::Unavailable("redb: io error at /var/lib".into()));
        assert!(!e.message.contains("redb"));
        assert_eq!(e.retry_after, Some(1));
    }

    #[test]
    fn throttling_carries_retry_after() {
        let e = ApiError::from(Error::Throttled { message: "slow down".into(), retry_after_secs: 0 });
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.retry_after, Some(1));
    }
}
