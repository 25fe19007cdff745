//! What wraps every route: the tracking ID, the Azure error envelope, the one-`Host` check, the body limit, and
//! the path normalisation that lets clients spell collection names in any case (and add a trailing slash).

use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HOST, RETRY_AFTER};
use axum::http::uri::{Authority, Scheme};
use axum::http::{HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use time::OffsetDateTime;
use tower::ServiceExt;
use tracing::Instrument;

use crate::error::ApiError;
use crate::extract::{JSON_CONTENT_TYPE, json, set_header};

/// Response header carrying the tracking ID (Azure's name).
pub const REQUEST_ID_HEADER: &str = "x-ms-request-id";

/// The tracking ID of a request, in its extensions (for handlers that want to quote it).
#[derive(Debug, Clone)]
pub struct TrackingId(pub String);

/// The body limit of a request, by method and raw path (before normalisation).
pub(crate) type BodyLimit = fn(&Method, &str) -> usize;

/// One API behind the layers: its route table, and how a request is prepared for it.
#[derive(Clone)]
pub(crate) struct Api {
    /// Whether a path is this API's (the last API of a [`front`] takes what no other claims).
    pub(crate) serves: fn(&str) -> bool,
    /// The routes (without layers).
    pub(crate) routes: Router,
    /// The canonical spelling of the path's literal segments.
    pub(crate) normalise: fn(&[&str]) -> Vec<String>,
    /// The body limit by route.
    pub(crate) limit: BodyLimit,
}

/// A router that serves `apis` with every layer a binary needs: each request goes to the first API that serves
/// its path (else the last), through the tracking ID and error envelope, the one-`Host` check, the body limit
/// and path normalisation, in that order. The layers are one service around the route tables (not a stack of
/// middleware with a boxed future and a cloned service each): this is every request's path.
pub(crate) fn front(apis: Vec<Api>) -> Router {
    assert!(!apis.is_empty(), "a front needs an API");
    Router::new().fallback_service(Front(apis.into()))
}

#[derive(Clone)]
struct Front(std::sync::Arc<[Api]>);

impl tower::Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Dispatch;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Dispatch {
        let path = req.uri().path();
        let api = self.0.iter().find(|api| (api.serves)(path)).unwrap_or_else(|| &self.0[self.0.len() - 1]).clone();
        Box::pin(async move { Ok(envelope(req, api).await) })
    }
}

/// The checks of [`front`] after the envelope, then the API's routes.
async fn checked(req: Request, api: Api) -> Response {
    if let Err(refused) = one_host(&req) {
        return refused.into_response();
    }
    let req = match limit_body((api.limit)(req.method(), req.uri().path()), req) {
        Ok(req) => req,
        Err(refused) => return refused.into_response(),
    };
    let req = normalise_path(req, api.normalise);
    let Ok(response) = api.routes.oneshot(req).await;
    response
}

/// Refused unless the request names one host: at most one `Host` header, a valid one, and the same host and port
/// as the URI's authority (HTTP/2 `:authority`, or an HTTP/1 absolute URI) when both are there. The host picks
/// the instance ([`crate::service_host`]), so a request that names two must not be resolved by picking one.
fn one_host(req: &Request) -> Result<(), ApiError> {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ApiError::invalid("The request has more than one Host header"));
    }
    if let Some(host) = host {
        let Some(host) = host.to_str().ok().filter(|h| !h.contains('@')).and_then(|h| h.parse::<Authority>().ok())
        else {
            return Err(ApiError::invalid("The Host header is not a valid host"));
        };
        if let Some(authority) = req.uri().authority() {
            let scheme = req.uri().scheme();
            if !same_host(&host, authority, scheme) {
                return Err(ApiError::invalid("The Host header differs from the request's authority"));
            }
        }
    }
    Ok(())
}

/// Whether two authorities name one host: case-insensitive names, an absent port being the scheme's default.
fn same_host(a: &Authority, b: &Authority, scheme: Option<&Scheme>) -> bool {
    let default = if scheme == Some(&Scheme::HTTP) { 80 } else { 443 };
    a.host().eq_ignore_ascii_case(b.host()) && a.port_u16().unwrap_or(default) == b.port_u16().unwrap_or(default)
}

/// The body limit: 413 at once when `Content-Length` says more than `limit`, else the body is read through a
/// bound (413 when a body without a length goes past it).
fn limit_body(limit: usize, req: Request) -> Result<Request, ApiError> {
    let declared =
        req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    let (parts, body) = req.into_parts();
    Ok(Request::from_parts(parts, Body::new(http_body_util::Limited::new(body, limit))))
}

/// Rewrite the literal segments of the path to their canonical spelling and drop a trailing slash, so that
/// routing is case-insensitive on names and case-preserving on IDs.
fn normalise_path(mut req: Request, normalise: fn(&[&str]) -> Vec<String>) -> Request {
    let path = req.uri().path();
    let trimmed = if path.len() > 1 { path.strip_suffix('/').unwrap_or(path) } else { path };
    let segments: Vec<&str> = trimmed.split('/').skip(1).collect();
    let canonical = format!("/{}", normalise(&segments).join("/"));
    if canonical != path {
        let path_and_query = match req.uri().query() {
            Some(q) => format!("{canonical}?{q}"),
            None => canonical,
        };
        let mut parts = req.uri().clone().into_parts();
        if let Ok(pq) = path_and_query.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }
    req
}

/// The canonical spelling of `segment` if it is one of `words` in any case, else `segment` unchanged.
pub(crate) fn canon(segment: &str, words: &[&'static str]) -> String {
    words.iter().find(|w| w.eq_ignore_ascii_case(segment)).map_or_else(|| segment.to_string(), |w| w.to_string())
}

/// Tracking ID, span, log line, and the Azure body for every error answer (ours or the router's).
async fn envelope(mut req: Request, api: Api) -> Response {
    let tracking_id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(TrackingId(tracking_id.clone()));
    let span = tracing::info_span!(
        "request",
        tracking_id = %tracking_id,
        method = %req.method(),
        path = %req.uri().path(),
        scope = tracing::field::Empty,
    );
    async move {
        let started = Instant::now();
        // A panic anywhere below answers 500 with the Azure body instead of dropping the connection.
        let mut response = match CatchUnwind(std::pin::pin!(checked(req, api))).await {
            Ok(response) => response,
            Err(_) => ApiError::internal("a handler panicked").into_response(),
        };
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            response = error_response(response, &tracking_id);
        }
        set_header(&mut response, REQUEST_ID_HEADER, &tracking_id);
        tracing::info!(status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "answered");
        response
    }
    .instrument(span)
    .await
}

/// A future that turns a panic while polling into an error (the panic hook has already logged it).
struct CatchUnwind<'a, F>(Pin<&'a mut F>);

impl<F: Future> Future for CatchUnwind<'_, F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

/// Azure's ProvisioningServiceErrorDetails.
#[serde_with::skip_serializing_none]
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    error_code: u32,
    tracking_id: &'a str,
    message: &'a str,
    timestamp_utc: String,
    /// The TPM challenge: the key blob, and the `skn` to sign with (the C SDK reads both).
    authentication_key: Option<&'a str>,
    key_name: Option<&'static str>,
}

fn error_response(response: Response, tracking_id: &str) -> Response {
    let error =
        response.extensions().get::<ApiError>().cloned().unwrap_or_else(|| ApiError::for_status(response.status()));
    if let Some(detail) = &error.detail {
        tracing::error!(code = error.code(), detail = %detail, "request failed");
    } else {
        tracing::info!(code = error.code(), reason = %error.message, "request refused");
    }
    let timestamp_utc =
        OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let body = ErrorBody {
        error_code: error.code(),
        tracking_id,
        message: &error.message,
        timestamp_utc,
        authentication_key: error.authentication_key.as_deref(),
        key_name: error.authentication_key.as_ref().map(|_| "registration"),
    };
    let mut answer = json(error.status, &body);
    if let Some(allow) = response.headers().get(ALLOW) {
        answer.headers_mut().insert(ALLOW, allow.clone());
    }
    if let Some(secs) = error.retry_after {
        answer.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    answer.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(JSON_CONTENT_TYPE));
    set_header(&mut answer, "x-ms-error-code", &error.code().to_string());
    answer
}

/// An error answered by the server around the router (a connection limit), in the same shape as the router's:
/// the Azure body with `tracking_id`, which is also the `x-ms-request-id` header.
pub fn error_answer(error: ApiError, tracking_id: &str) -> Response {
    let mut answer = error_response(error.into_response(), tracking_id);
    set_header(&mut answer, REQUEST_ID_HEADER, tracking_id);
    answer
}

/// The request deadline: a request that takes longer than `limit` is answered 503 through the error table
/// (`Unavailable`: 503001, `Retry-After`), with a tracking ID in the body, the header and the log line.
pub(crate) async fn deadline(limit: std::time::Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => response,
        Err(_) => {
            let tracking_id = uuid::Uuid::new_v4().to_string();
            tracing::warn!(tracking_id = %tracking_id, status = 503, "request timed out");
            let error = dps_core::Error::Unavailable("The request took too long; retry later".into());
            error_answer(ApiError::from(error), &tracking_id)
        }
    }
}

/// Fallback of every route table: 404 in the error table.
pub(crate) async fn no_route() -> Response {
    ApiError::no_route().into_response()
}

/// The future of [`front`]'s service.
type Dispatch = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send + 'static>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(segments: &[&str]) -> Vec<String> {
        segments.iter().map(|s| canon(s, &["enrollmentGroups"])).collect()
    }

    #[tokio::test]
    async fn a_panicking_route_answers_500_with_the_azure_body() {
        async fn boom() -> Response {
            panic!("boom: secret detail")
        }
        let router = front(vec![Api {
            serves: |_| true,
            routes: Router::new().route("/boom", axum::routing::get(boom)),
            normalise: |s| s.iter().map(|s| s.to_string()).collect(),
            limit: |_, _| 1024,
        }]);
        let req = Request::builder().uri("/boom").body(axum::body::Body::empty()).unwrap();
        let res = router.oneshot(req).await.unwrap();
        assert_eq!(res.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let id = res.headers()[REQUEST_ID_HEADER].to_str().unwrap().to_string();
        let body = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["errorCode"], 500_001);
        assert_eq!(body["trackingId"], id.as_str());
        assert!(!body["message"].as_str().unwrap().contains("secret"));
    }

    #[test]
    fn paths_are_normalised_keeping_the_query() {
        let req = Request::builder().uri("/enrollmentgroups/g1/?api-version=1").body(Default::default()).unwrap();
        let req = normalise_path(req, identity);
        assert_eq!(req.uri().to_string(), "/enrollmentGroups/g1?api-version=1");
        let req = Request::builder().uri("/").body(Default::default()).unwrap();
        assert_eq!(normalise_path(req, identity).uri().path(), "/");
    }
}
