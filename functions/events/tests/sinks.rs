//! The local event sinks against real files and a real HTTP server on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{HeaderMap, StatusCode};
use dps_core::events::{Event, EventSink};
use dps_events::{JsonlFile, Queue, Webhook};
use serde_json::Value;

fn events(n: usize) -> Vec<Event> {
    (0..n).map(|i| Event::registration_deleted("0ne00000001", &format!("dev-{i}"))).collect()
}

#[tokio::test]
async fn the_file_gets_one_json_line_per_event_and_keeps_earlier_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    JsonlFile::open(&path).await.unwrap().publish(&events(2)).await.unwrap();
    JsonlFile::open(&path).await.unwrap().publish(&events(1)).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["subject"], "registrations/dev-1");
    assert_eq!(lines[2]["type"], "dps.registration.deleted");
}

/// A webhook endpoint answering the statuses in `plan` in turn (then 200), counting requests.
async fn endpoint(plan: Vec<StatusCode>) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<(String, Value)>>>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (h, g) = (hits.clone(), got.clone());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let n = h.fetch_add(1, Ordering::SeqCst);
            let status = plan.get(n).copied().unwrap_or(StatusCode::OK);
            if status.is_success() {
                let kind = headers.get("content-type").unwrap().to_str().unwrap().to_string();
                g.lock().unwrap().push((kind, serde_json::from_str(&body).unwrap()));
            }
            async move { status }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook?token=secret-in-query", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, hits, got)
}

#[tokio::test]
async fn the_webhook_retries_transient_failures_and_gets_each_event_once() {
    let (url, hits, got) = endpoint(vec![StatusCode::SERVICE_UNAVAILABLE, StatusCode::TOO_MANY_REQUESTS]).await;
    let hook = Webhook::new(&url).unwrap().with_backoff(Duration::from_millis(10));
    hook.publish(&events(2)).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 4, "two refusals, then one post per event");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, "application/cloudevents+json");
    assert_eq!(got[0].1["subject"], "registrations/dev-0");
}

#[tokio::test]
async fn a_refused_event_is_not_retried_and_an_unreachable_hook_fails_without_its_url() {
    // A 400 and a redirect (never followed) are refusals: no retry, and the next event still goes.
    let (url, hits, got) = endpoint(vec![StatusCode::BAD_REQUEST, StatusCode::MOVED_PERMANENTLY]).await;
    let hook = Webhook::new(&url).unwrap().with_backoff(Duration::from_millis(10));
    assert!(hook.publish(&events(3)).await.is_err(), "a refusal is reported");
    assert_eq!(hits.load(Ordering::SeqCst), 3, "one post per event");
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1["subject"], "registrations/dev-2");
    let err = Webhook::new("ftp://user:pw@example.net/hook?token=secret-in-query").err().unwrap();
    assert!(!err.contains("secret-in-query") && !err.contains("pw"), "{err}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let hook = Webhook::new(&format!("http://{closed}/hook?token=secret-in-query"))
        .unwrap()
        .with_backoff(Duration::from_millis(10));
    let err = hook.publish(&events(1)).await.unwrap_err().to_string();
    assert!(err.contains("not delivered after 5 tries"), "{err}");
    assert!(!err.contains("secret-in-query"), "{err}");
    assert!(Webhook::new("ftp://example.net/").is_err());
}

/// A sink that waits for a permit per call and keeps what it got.
struct Gated {
    gate: tokio::sync::Semaphore,
    got: std::sync::Mutex<Vec<String>>,
}

impl Default for Gated {
    fn default() -> Self {
        Self { gate: tokio::sync::Semaphore::new(0), got: Default::default() }
    }
}

#[async_trait]
impl EventSink for Gated {
    async fn publish(&self, events: &[Event]) -> dps_core::Result<()> {
        self.gate.acquire().await.unwrap().forget();
        self.got.lock().unwrap().extend(events.iter().map(|e| e.subject.clone()));
        Ok(())
    }
}

#[tokio::test]
async fn the_queue_answers_at_once_delivers_in_order_and_counts_what_it_drops() {
    let slow = Arc::new(Gated::default());
    let queue = Queue::start(vec![(slow.clone(), 100)], 3);
    // The sink is blocked: the first event is taken by its task, three more fill the queue, the rest drop.
    let all = events(6);
    queue.publish(&all[..1]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for e in &all[1..4] {
        queue.publish(std::slice::from_ref(e)).await.unwrap();
    }
    assert!(queue.publish(&all[4..]).await.is_err(), "a full queue says so");
    slow.gate.add_permits(10);
    let stats = queue.close(Duration::from_secs(5)).await;
    assert_eq!((stats.delivered, stats.dropped, stats.failed), (4, 2, 0));
    let got = slow.got.lock().unwrap().clone();
    assert_eq!(got, ["registrations/dev-0", "registrations/dev-1", "registrations/dev-2", "registrations/dev-3"]);
    assert!(queue.publish(&all[..1]).await.is_err(), "a closed queue takes nothing");
}
