//! `--metrics-listen`: after real registrations against the `dps` binary (one failed for want of a hub, two
//! assigned, one refused), its `/metrics` text, read by a Prometheus text parser, counts exactly those.

use std::io::{Read, Write};

use dps_loadgen::client::Endpoint;
use dps_loadgen::setup::{Attestation, Service, enroll, link_hub};
use prometheus_parse::{Scrape, Value};
use serde_json::{Value as Json, json};

mod support;
use support::Server;

/// What these tests read from the server.
trait Scraped {
    fn scrape(&self) -> Scrape;
}

impl Scraped for Server {
    /// `GET /metrics` over plain HTTP, parsed.
    fn scrape(&self) -> Scrape {
        let mut stream = std::net::TcpStream::connect(self.field("metricsListen")).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: application/openmetrics-text"), "{head}");
        assert!(body.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF: {body}");
        Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
    }
}

/// The sample of `metric` whose labels include `labels` (counters read as Prometheus' classic parser reads
/// OpenMetrics counters: untyped `_total` samples); 0 when absent.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{metric} is {other:?}"),
        })
        .collect();
    assert!(matching.len() <= 1, "{metric} {labels:?} names one series: {matching:?}");
    matching.first().copied().unwrap_or(0.0)
}

async fn register(endpoint: &Endpoint, scope: &str, id: &str, authorization: &str) -> (u16, Json) {
    let mut conn = endpoint.connect().await.unwrap();
    let path = format!("/{scope}/registrations/{id}/register?api-version=2021-06-01");
    let body = json!({"registrationId": id});
    let answer =
        conn.call("PUT", endpoint.host(), &path, &[("authorization", authorization)], Some(&body)).await.unwrap();
    (answer.status, answer.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_registrations_as_they_ended() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--metrics-listen", "127.0.0.1:0"]);
    let before = server.scrape();
    assert_eq!(value(&before, "dps_registrations_total", &[]), 0.0);

    let endpoint = server.endpoint().await;
    let service = Service::new(endpoint.clone(), &server.field("connectionString")).unwrap();
    let scope = server.field("idScope");
    let devices = enroll(&service, &scope, "metrics", 3, Attestation::Group, 1).await.unwrap();

    // No hub linked yet: the hashed policy has nowhere to go.
    let (status, body) = register(&endpoint, &scope, &devices[0].id, &devices[0].authorization).await;
    let error = &body["registrationState"]["errorCode"];
    assert_eq!((status, &body["status"], error), (202, &json!("failed"), &json!(400_208)), "{body}");
    link_hub(&service, "metrics-hub.example.net").await.unwrap();
    for device in &devices[1..] {
        let (status, body) = register(&endpoint, &scope, &device.id, &device.authorization).await;
        assert_eq!((status, &body["status"]), (202, &json!("assigned")), "{body}");
    }
    // Signed with another device's key: refused.
    let (status, _) = register(&endpoint, &scope, &devices[0].id, &devices[1].authorization).await;
    assert_eq!(status, 401);

    let after = server.scrape();
    let written = |outcome| {
        value(
            &after,
            "dps_registrations_total",
            &[("outcome", outcome), ("attestation", "symmetricKey"), ("allocation_policy", "hashed")],
        )
    };
    assert_eq!(written("assigned"), 2.0);
    assert_eq!(written("failed"), 1.0);
    assert_eq!(value(&after, "dps_registration_errors_total", &[("error_code", "400208")]), 1.0);
    assert_eq!(value(&after, "dps_hub_failures_total", &[]), 0.0, "no hub call failed");
    let ended = |outcome| value(&after, "dps_registration_duration_seconds_count", &[("outcome", outcome)]);
    assert_eq!((ended("assigned"), ended("failed"), ended("refused")), (2.0, 1.0, 1.0));
    let latency = after
        .samples
        .iter()
        .find(|s| s.metric == "dps_registration_duration_seconds" && s.labels.get("outcome") == Some("assigned"))
        .expect("the latency histogram of assigned registrations");
    let Value::Histogram(buckets) = &latency.value else { panic!("{latency:?}") };
    assert_eq!(buckets.last().map(|b| (b.less_than, b.count)), Some((f64::INFINITY, 2.0)), "{buckets:?}");

    let requests = |door, class| value(&after, "dps_requests_total", &[("front_door", door), ("status_class", class)]);
    assert_eq!(requests("device", "2xx"), 3.0, "three register calls answered 202");
    assert_eq!(requests("device", "4xx"), 1.0, "one refused");
    // The group and the hub link; the scrape before counted nothing.
    assert_eq!(requests("service", "2xx"), 2.0);
    assert_eq!(value(&before, "dps_requests_total", &[]), 0.0);
}

#[test]
fn metrics_are_off_unless_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    assert_eq!(server.info["metricsListen"], Json::Null, "{}", server.info);
}
