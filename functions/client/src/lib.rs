//! A client for the service API of any deployment of the device provisioning service: the local `dps serve` or
//! the Lambda stack answer the same HTTP API, so one client serves both.
//!
//! [`Client`] signs every call with a service SAS token from a [`ConnectionString`], sends it to the instance's
//! service host name (or to an endpoint override, speaking as that host name: the server routes service calls by
//! `Host`), retries throttled and unavailable answers within a bound, and turns error answers into [`Error`]s.
//! The typed calls are in [`api`].

pub mod api;
mod connection;
mod error;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use connection::ConnectionString;
pub use error::{Error, ErrorKind};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

/// The api-version sent on every call (the stable version the Azure SDKs use).
pub const API_VERSION: &str = "2021-10-01";
/// Lifetime of the SAS tokens the client signs; a new one is signed when less than a tenth is left.
const TOKEN_LIFETIME_SECS: i64 = 3600;

/// How throttled (429) and unavailable (503) answers are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    /// Most attempts of one call, the first included.
    pub max_attempts: u32,
    /// The longest wait honoured from a `Retry-After` (a longer one is cut to this).
    pub max_wait: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Self { max_attempts: 8, max_wait: Duration::from_secs(30) }
    }
}

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Whose instance, and the key that signs.
    pub connection: ConnectionString,
    /// Send to this base URL (`https://127.0.0.1:8443`, `http://127.0.0.1:9000`) instead of
    /// `https://{HostName}`; TLS still checks the certificate for the host name, and `Host` carries it.
    pub endpoint: Option<String>,
    /// An extra CA certificate (PEM) to trust, e.g. the local server's generated `tls/ca.pem`.
    pub ca_pem: Option<Vec<u8>>,
    /// Deadline of one HTTP exchange.
    pub timeout: Duration,
    /// Retries of 429 and 503.
    pub retry: Retries,
}

impl ClientOptions {
    /// Options with the defaults: no endpoint override, no extra CA, 60 s per exchange.
    pub fn new(connection: ConnectionString) -> Self {
        Self { connection, endpoint: None, ca_pem: None, timeout: Duration::from_secs(60), retry: Retries::default() }
    }
}

/// What the retries cost so far (shared by clones of a client), for summaries.
#[derive(Debug, Default)]
pub struct Stats {
    /// Throttled answers (429) received, retried or not.
    pub throttled: AtomicU64,
    /// Requests sent again after a 429 or 503.
    pub retries: AtomicU64,
    /// Milliseconds spent waiting before retries.
    pub waited_ms: AtomicU64,
}

/// A service API client; cheap to clone (one connection pool).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    connection: Arc<ConnectionString>,
    token: Arc<Mutex<(String, i64)>>,
    retry: Retries,
    stats: Arc<Stats>,
}

/// An answer: status, headers of interest, and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    /// HTTP status (2xx: errors are returned as [`Error`]).
    pub status: StatusCode,
    /// `x-ms-continuation`, on query pages.
    pub continuation: Option<String>,
    /// The body.
    pub body: Value,
}

impl Client {
    /// A client for `options`; resolves the endpoint override once.
    pub async fn new(options: ClientOptions) -> Result<Self, Error> {
        let host = options.connection.host_name.to_ascii_lowercase();
        let mut builder = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("dps-client/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.ca_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| Error::usage(format!("the CA certificate is not PEM: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let base = match &options.endpoint {
            None => Url::parse(&format!("https://{host}/"))
                .map_err(|e| Error::usage(format!("HostName '{host}' is not a host name: {e}")))?,
            Some(endpoint) => {
                let endpoint = Url::parse(endpoint)
                    .map_err(|e| Error::usage(format!("--endpoint '{endpoint}' is not a URL: {e}")))?;
                if !matches!(endpoint.scheme(), "https" | "http") {
                    return Err(Error::usage("--endpoint must be an https:// (or http://) URL"));
                }
                let port = endpoint.port_or_known_default().unwrap_or(443);
                let target = endpoint.host_str().unwrap_or_default().trim_matches(['[', ']']).to_string();
                let addr = resolve(&target, port).await?;
                // Connect to the endpoint's address while the URL (so SNI, certificate check and Host) names the
                // instance's host; reqwest takes the port from the URL.
                builder = builder.resolve(&host, addr);
                Url::parse(&format!("{}://{host}:{port}/", endpoint.scheme()))
                    .map_err(|e| Error::usage(format!("HostName '{host}' is not a host name: {e}")))?
            }
        };
        let http = builder.build().map_err(|e| Error::usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base,
            connection: Arc::new(options.connection),
            token: Arc::new(Mutex::new((String::new(), 0))),
            retry: options.retry,
            stats: Arc::default(),
        })
    }

    /// The instance's service host name.
    pub fn host_name(&self) -> &str {
        &self.connection.host_name
    }

    /// Where requests go (`https://host[:port]/`).
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Retry counters of this client and its clones.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Send one JSON request (`body` None: no body) and read the JSON answer; see [`Client::send`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer, Error> {
        let body = body.map(|v| ("application/json", serde_json::to_vec(v).expect("JSON values serialise")));
        self.send(method, path, body, headers).await
    }

    /// Send a request with a raw body of `content_type`, retrying 429 and 503 as the [`Retries`] allows
    /// (waiting `Retry-After`, at most `max_wait`, 1 s when absent). `path` is relative to the service root and
    /// may carry a query; `api-version` is added.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
        headers: &[(&str, String)],
    ) -> Result<Answer, Error> {
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::usage(format!("bad path '{path}': {e}")))?;
        url.query_pairs_mut().append_pair("api-version", API_VERSION);
        let mut attempt = 1;
        loop {
            let mut request =
                self.http.request(method.clone(), url.clone()).header("authorization", self.authorization()?);
            for (name, value) in headers {
                request = request.header(*name, value);
            }
            if let Some((content_type, bytes)) = &body {
                request = request.header("content-type", *content_type).body(bytes.clone());
            }
            let outcome = match request.send().await {
                Ok(response) => answer(response).await,
                Err(e) => Err(transport_error(&e, &url)),
            };
            match outcome {
                Err(err) if retryable(&err) && attempt < self.retry.max_attempts => {
                    if err.kind == ErrorKind::Throttled {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    let wait = err.retry_after.unwrap_or(Duration::from_secs(1)).min(self.retry.max_wait);
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    self.stats.waited_ms.fetch_add(wait.as_millis() as u64, Ordering::Relaxed);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Err(err) => {
                    if err.kind == ErrorKind::Throttled {
                        self.stats.throttled.fetch_add(1, Ordering::Relaxed);
                    }
                    return Err(err);
                }
                Ok(answer) => return Ok(answer),
            }
        }
    }

    /// The current token, signing a new one when the last is near its end.
    fn authorization(&self) -> Result<String, Error> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut slot = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if slot.1 - now < TOKEN_LIFETIME_SECS / 10 {
            let expiry = now + TOKEN_LIFETIME_SECS;
            *slot = (self.connection.token(expiry)?, expiry);
        }
        Ok(slot.0.clone())
    }
}

/// 429 always; 503 (the server's own "try again", with `Retry-After`); not other 5xx, which may have applied.
fn retryable(err: &Error) -> bool {
    err.kind == ErrorKind::Throttled || err.status == Some(503)
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, Error> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let mut found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| Error::of(ErrorKind::Unavailable, format!("cannot resolve the endpoint '{host}': {e}")))?;
    found.next().ok_or_else(|| Error::of(ErrorKind::Unavailable, format!("the endpoint '{host}' has no address")))
}

async fn answer(response: reqwest::Response) -> Result<Answer, Error> {
    let status = response.status();
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let continuation = header("x-ms-continuation").filter(|c| !c.is_empty());
    let tracking_id = header("x-ms-request-id");
    let retry_after = header("retry-after").and_then(|v| v.trim().parse::<u64>().ok()).map(Duration::from_secs);
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Error::of(ErrorKind::Unavailable, format!("the answer broke off while being read: {e}")))?;
    let body: Value =
        if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
    if status.is_success() {
        return Ok(Answer { status, continuation, body });
    }
    let message = body
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("the server answered {status}"));
    Err(Error {
        kind: Error::kind_of_status(status.as_u16()),
        message,
        status: Some(status.as_u16()),
        error_code: body.get("errorCode").and_then(Value::as_u64),
        tracking_id: body.get("trackingId").and_then(Value::as_str).map(str::to_string).or(tracking_id),
        retry_after,
    })
}

fn transport_error(err: &reqwest::Error, url: &Url) -> Error {
    use std::error::Error as _;
    let mut cause = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        cause = format!("{cause}: {s}");
        source = s.source();
    }
    let what = if err.is_timeout() { "timed out" } else { "failed" };
    Error::of(ErrorKind::Unavailable, format!("the request to {} {what}: {cause}", url.origin().ascii_serialization()))
}
