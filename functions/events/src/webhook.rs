//! Events posted to an HTTP(S) endpoint, one CloudEvent per request (structured mode,
//! `application/cloudevents+json`), retried with backoff while the endpoint fails transiently.

use std::time::Duration;

use async_trait::async_trait;
use dps_core::events::{Event, EventSink};
use dps_core::{Error, Result};

/// Tries per event: the first and four retries, 0.5 s, 1 s, 2 s and 4 s apart.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Bound of one attempt, connection included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A webhook that receives events.
pub struct Webhook {
    url: reqwest::Url,
    client: reqwest::Client,
    backoff: Duration,
}

impl Webhook {
    /// A webhook at `url` (http or https; https is checked against the Mozilla roots).
    pub fn new(url: &str) -> std::result::Result<Self, String> {
        // Messages never repeat the URL: its path or query may carry the endpoint's secret.
        let url = reqwest::Url::parse(url).map_err(|e| format!("events webhook URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!("events webhook URL: only http and https are supported, not {}", url.scheme()));
        }
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("events webhook client: {e}"))?;
        Ok(Self { url, client, backoff: FIRST_BACKOFF })
    }

    /// The same webhook with a shorter first backoff (tests).
    pub fn with_backoff(self, backoff: Duration) -> Self {
        Self { backoff, ..self }
    }

    async fn post(&self, event: &Event) -> Result<()> {
        let body = serde_json::to_vec(event).map_err(|e| Error::internal(e.to_string()))?;
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let sent = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/cloudevents+json")
                .body(body.clone())
                .send()
                .await;
            match sent {
                Ok(answer) if answer.status().is_success() => return Ok(()),
                // The endpoint refuses this event (a 4xx, or a redirect, which is not followed): retrying would
                // not help.
                Ok(answer) if !answer.status().is_server_error() && !retryable(answer.status()) => {
                    return Err(Error::invalid(format!(
                        "events webhook refused event {}: {}",
                        event.id,
                        answer.status()
                    )));
                }
                Ok(answer) => last = format!("HTTP {}", answer.status()),
                Err(err) => last = without_url(&err),
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
        Err(Error::Unavailable(format!(
            "events webhook: event {} not delivered after {ATTEMPTS} tries: {last}",
            event.id
        )))
    }
}

fn retryable(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::REQUEST_TIMEOUT || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// A transport error without the URL (which may carry a token in its query).
fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    kind.to_string()
}

#[async_trait]
impl EventSink for Webhook {
    /// Posts each event; a refused one is skipped (the rest still go), an endpoint that stays unreachable stops
    /// the batch. The delivery queue hands a webhook one event at a time, so its counts are exact.
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let mut refused = None;
        for event in events {
            match self.post(event).await {
                Ok(()) => {}
                Err(err @ Error::Invalid(_)) => refused = Some(err),
                Err(other) => return Err(other),
            }
        }
        refused.map_or(Ok(()), Err)
    }
}
