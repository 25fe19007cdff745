//! The one error type of the domain. The HTTP crate maps each variant to a status and an Azure error body.

/// Result alias used across the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors a caller can act on. Messages are safe to show to the caller; internal details go to logs.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The request is malformed or violates a rule (bad ID, bad key, unknown hub...).
    #[error("{0}")]
    Invalid(String),
    /// The caller could not be authenticated, or lacks the right for the operation.
    #[error("{0}")]
    Unauthorized(String),
    /// The named thing does not exist (in this instance).
    #[error("{0}")]
    NotFound(String),
    /// The thing already exists, or a concurrent writer won.
    #[error("{0}")]
    Conflict(String),
    /// An If-Match etag did not match the stored version.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The request body is larger than the service accepts.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The caller is over a rate limit, or the store throttled us past our retries.
    #[error("{message}")]
    Throttled {
        /// Human-readable reason.
        message: String,
        /// Seconds the caller should wait.
        retry_after_secs: u32,
    },
    /// A transient failure of a dependency (store, network); the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected state; the message is logged, never shown.
    #[error("{0}")]
    Internal(String),
    /// Not an error of the device: the TPM challenge (Azure answers a TPM device's first register with 401 and
    /// the key it must import and sign with).
    #[error("TPM challenge: sign a SAS token with the key in authenticationKey and register again")]
    TpmChallenge {
        /// The `authenticationKey` blob, base64.
        authentication_key: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::Invalid(msg.into())
    }
    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }
    /// Shorthand for [`Error::Unauthorized`].
    pub fn unauthorized(msg: impl Into<String>) -> Self {
        Self::Unauthorized(msg.into())
    }
    /// Shorthand for [`Error::Internal`].
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }
}
