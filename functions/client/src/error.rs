//! One error type for every call, classified so that a command line can turn it into an exit code and a hint.

use std::fmt;
use std::time::Duration;

/// What kind of failure, as a caller acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request (or the local input that would make it) is wrong: 400, 405, 413, 415, bad arguments or files.
    Usage,
    /// 404: no such enrollment, group, record, hub, policy, certificate.
    NotFound,
    /// 409 or 412: exists already, changed concurrently, etag stale, still referenced.
    Conflict,
    /// 401 or 403: bad or expired key, wrong host name, missing right.
    Auth,
    /// 429 still answered after the retries allowed.
    Throttled,
    /// 5xx, or the server could not be reached (connection, TLS, timeout).
    Unavailable,
}

/// A failed call: the kind, and what the server said (Azure error body) when it answered.
#[derive(Debug, Clone)]
pub struct Error {
    /// How to act on it.
    pub kind: ErrorKind,
    /// What went wrong, in words (the server's `message` when it answered).
    pub message: String,
    /// HTTP status, when the server answered.
    pub status: Option<u16>,
    /// The Azure `errorCode` (status x 1000 + sub-code), when the body had one.
    pub error_code: Option<u64>,
    /// The server's tracking ID (`x-ms-request-id`), to find the request in its logs.
    pub tracking_id: Option<String>,
    /// `Retry-After`, when the server sent one.
    pub retry_after: Option<Duration>,
}

impl Error {
    /// A local mistake (arguments, input files, connection string).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::of(ErrorKind::Usage, message)
    }

    /// An error of `kind` that no server answer carries.
    pub fn of(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), status: None, error_code: None, tracking_id: None, retry_after: None }
    }

    /// The kind an HTTP status means.
    pub fn kind_of_status(status: u16) -> ErrorKind {
        match status {
            401 | 403 => ErrorKind::Auth,
            404 => ErrorKind::NotFound,
            409 | 412 => ErrorKind::Conflict,
            429 => ErrorKind::Throttled,
            500.. => ErrorKind::Unavailable,
            _ => ErrorKind::Usage,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let mut detail = Vec::new();
        if let Some(s) = self.status {
            detail.push(format!("HTTP {s}"));
        }
        if let Some(c) = self.error_code {
            detail.push(format!("errorCode {c}"));
        }
        if let Some(t) = &self.tracking_id {
            detail.push(format!("trackingId {t}"));
        }
        if !detail.is_empty() {
            write!(f, " ({})", detail.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
