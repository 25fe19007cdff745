//! Request extractors and response helpers shared by the routes: bounded JSON bodies, `api-version`, path
//! segments, the service caller, and JSON answers.

use std::marker::PhantomData;

use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use dps_core::{Caller, Dps};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub use crate::bounds::{MAX_BODY_BYTES, MAX_JSON_DEPTH, MAX_POLICY_BYTES};
/// Content type of every JSON answer.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=utf-8";

/// api-versions the Azure routes accept (device and service API).
pub const API_VERSIONS: &[&str] = &[
    "2017-08-31-preview",
    "2017-11-15",
    "2018-04-01",
    "2018-09-01-preview",
    "2018-11-01",
    "2019-01-15",
    "2019-03-31",
    "2021-06-01",
    "2021-10-01",
    "2025-07-01-preview",
    "2026-04-01",
];

/// A JSON body: `None` when the body is empty. Checks size, content type, depth, then shape.
pub struct JsonBody<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let bytes = read_body(body, MAX_BODY_BYTES).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(None));
        }
        if !is_json_content_type(&parts.headers) {
            return Err(ApiError::media_type());
        }
        if json_depth_exceeds(&bytes, MAX_JSON_DEPTH) {
            return Err(ApiError::too_deep(MAX_JSON_DEPTH));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| body_error("request body", &e.path().to_string(), e.inner()))?;
        de.end().map_err(|e| body_error("request body", "", &e))?;
        Ok(JsonBody(Some(value)))
    }
}

/// Parse an already-checked JSON value into `T`, with the same error row as a body. `what` names it in the
/// message (`enrollments[3]`).
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value, what: &str) -> Result<T, ApiError> {
    // Re-read from text so that the error can say where, as it does for a body.
    let text = value.to_string();
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| body_error(what, &e.path().to_string(), e.inner()))
}

/// A body error that names the field path and the position, never the rejected value: serde's own messages
/// quote it (`invalid type: string "<the key>"`), and a misplaced key must not come back in the answer or
/// reach the logs. Only messages that quote nothing the client sent as a value are kept.
fn body_error(what: &str, path: &str, inner: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    let at = format!("line {}, column {}", inner.line(), inner.column());
    if inner.classify() != Category::Data {
        return ApiError::malformed_body(format!("The {what} is not valid JSON ({at})"));
    }
    let field = if path == "." || path.is_empty() { String::new() } else { format!(" at '{path}'") };
    let message = inner.to_string();
    let why = if message.starts_with("missing field") {
        message.split(" at line").next().unwrap_or("a field is missing").to_string()
    } else {
        "a value of the wrong type or an unknown value".to_string()
    };
    ApiError::malformed_body(format!("Invalid {what}{field}: {why} ({at})"))
}

/// The whole body, at most `limit` bytes (413 beyond).
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let inner = e.into_inner();
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(inner.as_ref());
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::too_large(limit);
            }
            source = err.source();
        }
        ApiError::malformed_body("The request body could not be read")
    })
}

/// `application/json`, with any parameters (charset).
fn is_json_content_type(headers: &HeaderMap) -> bool {
    has_content_type(headers, "application/json")
}

/// Whether the body's media type is `mime` (any case, any parameters).
pub(crate) fn has_content_type(headers: &HeaderMap, mime: &str) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(mime))
}

/// Whether JSON text nests arrays/objects deeper than `limit` (checked before parsing, so a hostile body
/// never reaches the recursive parser).
pub fn json_depth_exceeds(bytes: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The value of a query parameter, percent-decoded (`+` as space).
pub fn query_param(parts: &Parts, name: &str) -> Option<String> {
    query_param_of(parts.uri.query()?, name)
}

fn query_param_of(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned())
    })
}

/// The `api-version` of an Azure route: required, one of [`API_VERSIONS`].
pub struct ApiVersion(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        match query_param(parts, "api-version") {
            None => Err(ApiError::api_version("The api-version query parameter is required")),
            Some(v) if API_VERSIONS.contains(&v.as_str()) => Ok(ApiVersion(v)),
            Some(v) => Err(ApiError::api_version(format!(
                "Unsupported api-version '{}'; supported: {}",
                dps_core::ids::printable(&v),
                API_VERSIONS.join(", ")
            ))),
        }
    }
}

/// Our extension's `api-version`: optional, but checked when present.
pub struct OptionalApiVersion;

impl<S: Send + Sync> FromRequestParts<S> for OptionalApiVersion {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if query_param(parts, "api-version").is_some() {
            ApiVersion::from_request_parts(parts, state).await?;
        }
        Ok(OptionalApiVersion)
    }
}

/// Percent-decoded path parameters, with failures in the error table.
pub struct Segments<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Segments<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Segments(t))
            .map_err(|_| ApiError::invalid("A path segment is not valid UTF-8 once percent-decoded"))
    }
}

/// The host a service API request was sent to, which picks the instance. The one place that decides it
/// (the `Host` header, else the URI authority as HTTP/2 carries it); the port is ignored by the core.
pub fn service_host(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.as_str().to_string()))
        .filter(|h| !h.is_empty())
}

/// What every service API handler starts from: the service, the `api-version` check `V`, and the authenticated
/// caller (SAS token of one of the instance's policies), checked in that order. [`ServiceCall`] for the Azure
/// routes, [`ExtensionCall`] for our `/config` and `/policies` extensions.
pub struct Call<V> {
    /// The service the router was built with.
    pub dps: Dps,
    /// Who is calling, and on which instance.
    pub caller: Caller,
    version: PhantomData<fn() -> V>,
}

/// A call of an Azure service API route: `api-version` required.
pub type ServiceCall = Call<ApiVersion>;
/// A call of our extensions: `api-version` optional, checked when sent.
pub type ExtensionCall = Call<OptionalApiVersion>;
/// What a service API handler answers.
pub type Answer = Result<Response, ApiError>;

impl<V: FromRequestParts<Dps, Rejection = ApiError>> FromRequestParts<Dps> for Call<V> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, dps: &Dps) -> Result<Self, ApiError> {
        V::from_request_parts(parts, dps).await?;
        let host = service_host(parts).ok_or_else(|| ApiError::invalid("The Host header is required"))?;
        let authorization = header_str(&parts.headers, AUTHORIZATION.as_str());
        let caller = dps.authenticate_service(&host, parts.uri.path(), authorization).await?;
        tracing::Span::current().record("scope", caller.instance.id_scope.as_str());
        Ok(Call { dps: dps.clone(), caller, version: PhantomData })
    }
}

/// A header's value as text, if present and visible ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The `If-Match` header, if any (empty counts as absent).
pub fn if_match(headers: &HeaderMap) -> Option<&str> {
    header_str(headers, "if-match").map(str::trim).filter(|v| !v.is_empty())
}

/// A JSON answer with our content type.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => {
            let mut response = (status, body).into_response();
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
            response
        }
        Err(e) => ApiError::internal(format!("serialising the answer: {e}")).into_response(),
    }
}

/// Add a header whose value we built (always valid visible ASCII; silently skipped otherwise).
pub fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().insert(HeaderName::from_static(name), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_counted_outside_strings() {
        assert!(!json_depth_exceeds(br#"{"a":[1,{"b":2}]}"#, 3));
        assert!(json_depth_exceeds(br#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(!json_depth_exceeds(br#"{"a":"[[[[[[[[\"[[[["}"#, 1));
        assert!(json_depth_exceeds("[".repeat(33).as_bytes(), 32));
        assert!(!json_depth_exceeds("[".repeat(32).as_bytes(), 32));
    }

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(query_param_of("a=1&api-version=2021-10-01", "api-version").as_deref(), Some("2021-10-01"));
        assert_eq!(query_param_of("from=2026%2D01%2D01", "from").as_deref(), Some("2026-01-01"));
        assert_eq!(query_param_of("x=1", "api-version"), None);
    }
}
