//! One HTTPS call to a hub registry with the connectors' timeouts and bounded retries, shared by the Azure IoT
//! Hub and HTTP registry connectors.
//!
//! Throttling (429, honouring `Retry-After`), 5xx answers, timeouts and connection failures are retried with
//! jittered exponential backoff while attempts and the total time allow; every other answer goes back to the
//! caller, which knows what 404, 409 or 412 mean for its operation. Each attempt builds its request afresh, so a
//! signature or token is never older than its attempt. Failure messages (which reach the device's registration
//! record) carry the status, never the hub's answer body or a credential; the operator's log has a scrubbed
//! excerpt of the body. Hub addresses come from what an instance owner links, so by default the client reaches
//! only public addresses (dps-netguard): a tenant cannot make the service call the deployment's own network.

use std::time::{Duration, Instant};

use dps_core::hubs::{HubFailure, HubFailureKind};
use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, StatusCode};

/// Timeouts and retry bounds of a connector's hub calls.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time to open a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time for one attempt, from connecting to the last byte of the answer (cut short by `total`).
    pub request_timeout: Duration,
    /// Time for one call including its retries; no retry starts that could not finish within it.
    pub total: Duration,
    /// Attempts per call (the first one included).
    pub attempts: u32,
    /// First retry delay; doubled per retry, with jitter.
    pub backoff: Duration,
    /// Longest wait before a retry, `Retry-After` included (a hub asking for longer is reported as throttling).
    pub max_backoff: Duration,
}

impl Default for Limits {
    /// Sized for a registration that a device waits for inside one Lambda invocation (15 s in template.yaml):
    /// at most 5 s per hub call, so that a hub that stops answering fails the registration (and its record is
    /// written) well before the function's timeout, even after earlier calls of the same registration.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            total: Duration::from_secs(5),
            attempts: 3,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(2),
        }
    }
}

impl Limits {
    /// An HTTPS client with these timeouts (rustls, the webpki roots, no redirects, no proxy from the
    /// environment); unless `private_targets`, names that resolve to a private, loopback or link-local address
    /// are refused before connecting.
    pub(crate) fn client(&self, private_targets: bool) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if !private_targets {
            builder = builder.dns_resolver(std::sync::Arc::new(dps_netguard::PublicOnly));
        }
        builder.build().expect("a reqwest client with rustls and webpki roots builds")
    }
}

/// A hub's final answer to a call.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

/// Who is called and what for, to word failures ("Azure IoT Hub h.azure-devices.net: create device d1 ...").
pub(crate) struct Call<'a> {
    pub hub: &'a str,
    pub what: &'a str,
    /// The credential that must never appear in a message (replaced if a hub echoes it).
    pub secret: &'a str,
}

impl Call<'_> {
    /// Send `request()` (called once per attempt), retrying what is worth retrying within `limits`.
    pub async fn send(&self, limits: &Limits, request: impl Fn() -> RequestBuilder) -> Result<Answer, HubFailure> {
        let deadline = Instant::now() + limits.total;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // No attempt outlives the call's total time.
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt_timeout = limits.request_timeout.min(remaining);
            let (failure, retry_after) = match request().timeout(attempt_timeout).send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = retry_after_header(response.headers());
                    match response.bytes().await {
                        Ok(body) if !retryable(status) => {
                            return Ok(Answer { status, body: body.to_vec() });
                        }
                        Ok(body) => {
                            let kind = if status == StatusCode::TOO_MANY_REQUESTS {
                                HubFailureKind::Throttled
                            } else {
                                HubFailureKind::Unreachable
                            };
                            self.log_answer(status, &body);
                            (HubFailure::new(kind, format!("answered {}", status.as_u16())), retry_after)
                        }
                        Err(err) => (self.transport(&err), None),
                    }
                }
                Err(err) => (self.transport(&err), None),
            };
            // A refused target stays refused: no retry.
            if failure.kind == HubFailureKind::NotConfigured {
                return Err(failure);
            }
            let backoff = limits.backoff.saturating_mul(1 << (attempt - 1).min(16)).min(limits.max_backoff);
            let jittered = backoff.mul_f64(0.5 + rand::random::<f64>() / 2.0);
            let wait = retry_after.unwrap_or(jittered);
            // A retry needs a useful slice of time after its wait: at least a tenth of an attempt's timeout.
            let out_of_time = Instant::now() + wait + limits.request_timeout / 10 >= deadline;
            if attempt >= limits.attempts || wait > limits.max_backoff || out_of_time {
                let message = format!("{}: {} {} (after {attempt} attempts)", self.hub, self.what, failure.message);
                return Err(HubFailure::new(failure.kind, self.scrub(&message)));
            }
            tracing::debug!(
                hub = self.hub,
                what = self.what,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying hub call"
            );
            tokio::time::sleep(wait).await;
        }
    }

    /// A hub answer the operation does not accept, as a refusal.
    pub fn refused(&self, answer: &Answer) -> HubFailure {
        self.log_answer(answer.status, &answer.body);
        let message = format!("{}: {} refused: {}", self.hub, self.what, answer.status.as_u16());
        HubFailure::new(HubFailureKind::Refused, self.scrub(&message))
    }

    /// The hub's own words on an answer that fails the call, for the operator only.
    fn log_answer(&self, status: StatusCode, body: &[u8]) {
        tracing::warn!(hub = self.hub, what = self.what, status = status.as_u16(), body = %self.excerpt(body), "hub answer");
    }

    /// A target the guard refused (it resolved to a private, loopback or link-local address).
    pub fn forbidden(&self) -> HubFailure {
        HubFailure::new(
            HubFailureKind::NotConfigured,
            format!(
                "{}: {}: the hub's address is not allowed (private, loopback and link-local addresses are not \
                 allowed here)",
                self.hub, self.what
            ),
        )
    }

    /// A 2xx answer whose body is not what the API documents.
    pub fn malformed(&self, detail: &str) -> HubFailure {
        HubFailure::new(
            HubFailureKind::Refused,
            self.scrub(&format!("{}: {}: unexpected answer: {detail}", self.hub, self.what)),
        )
    }

    fn transport(&self, err: &reqwest::Error) -> HubFailure {
        if let Some(target) = dps_netguard::ForbiddenTarget::in_chain(err) {
            tracing::warn!(hub = self.hub, target = %target, "hub target refused: private, loopback or link-local address");
            return self.forbidden();
        }
        let what = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "could not connect"
        } else {
            "failed in transit"
        };
        // The causes name DNS, TLS or a refused connection; no header (and so no token) is ever in them.
        let mut causes = String::new();
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            causes.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        HubFailure::new(HubFailureKind::Unreachable, format!("{what}{causes}"))
    }

    /// The first 200 characters of an answer body (error bodies say why), scrubbed.
    fn excerpt(&self, body: &[u8]) -> String {
        let text = String::from_utf8_lossy(body);
        let text: String = text.chars().filter(|c| !c.is_control()).take(200).collect();
        if text.is_empty() { String::new() } else { format!("({})", self.scrub(&text)) }
    }

    fn scrub(&self, text: &str) -> String {
        if self.secret.len() < 4 { text.to_owned() } else { text.replace(self.secret, "[redacted]") }
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// `Retry-After` in seconds (the HTTP-date form is rare from registries; it falls back to backoff).
fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}
