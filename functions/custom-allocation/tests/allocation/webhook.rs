//! Webhooks against a local axum server (the test instance allows private targets, except where refusal is
//! the point).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use dps_core::allocator::{AllocationFailure, AllocationResponse, CustomAllocator};
use dps_custom_allocation::codes::*;
use dps_custom_allocation::{PolicySettings, SIGNATURE_HEADER, WebhookSettings, webhook::sign};
use serde_json::{Value, json};

use crate::support::*;

pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// Answers like an Azure Function: first linked hub, an initial twin, and the device payload echoed. Refuses
/// requests whose signature does not verify.
async fn echo(headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let expected = sign(&instance(true).webhook_signing_key.unwrap(), &body);
    if headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return (StatusCode::UNAUTHORIZED, "bad signature".into());
    }
    let request: Value = serde_json::from_slice(&body).unwrap();
    let answer = json!({
        "iotHubHostName": request["linkedHubs"][0],
        "initialTwin": { "tags": { "from": "webhook" }, "properties": { "desired": { "interval": 30 } } },
        "payload": { "echo": request["deviceRuntimeContext"]["payload"], "group": request["enrollmentGroup"]["enrollmentGroupId"] },
    });
    (StatusCode::OK, answer.to_string())
}

async fn call(
    settings: WebhookSettings,
    url: &str,
    allow_private: bool,
) -> Result<AllocationResponse, AllocationFailure> {
    // These tests play a deployment that permits private targets (their webhook server is on loopback).
    let webhooks = WebhookSettings { permit_private_targets: true, ..settings };
    let h = Harness::with(PolicySettings { webhooks, ..PolicySettings::default() });
    h.allocator
        .allocate(&instance(allow_private), &webhook(url), &typed(&request("dev-1", Some(json!({ "x": 1 })), &HUBS)))
        .await
}

#[tokio::test]
async fn success_round_trips_payload_and_initial_twin_with_a_signature() {
    let addr = serve(Router::new().route("/alloc", post(echo))).await;
    let r = call(WebhookSettings::default(), &format!("http://{addr}/alloc?code=k"), true).await.unwrap();
    assert_eq!(r.iot_hub_host_name, HUBS[0]);
    assert_eq!(
        r.initial_twin,
        Some(json!({ "tags": { "from": "webhook" }, "properties": { "desired": { "interval": 30 } } }))
    );
    assert_eq!(r.payload, Some(json!({ "echo": { "x": 1 }, "group": "group-1" })));
}

async fn status(code: u16) -> Result<AllocationResponse, AllocationFailure> {
    let app = Router::new().route("/", post(move || async move { (StatusCode::from_u16(code).unwrap(), "no") }));
    let addr = serve(app).await;
    call(WebhookSettings::default(), &format!("http://{addr}/"), true).await
}

#[tokio::test]
async fn non_2xx_answers_fail_with_azure_codes() {
    assert_failure(status(400).await, WEBHOOK_STATUS, "Custom allocation failed with status code: 400");
    assert_failure(status(401).await, WEBHOOK_UNAUTHORIZED, "Custom allocation failed with status code: 401");
    assert_failure(status(404).await, WEBHOOK_STATUS, "Custom allocation failed with status code: 404");
    assert_failure(status(500).await, WEBHOOK_STATUS, "Custom allocation failed with status code: 500");
    assert_failure(status(503).await, WEBHOOK_STATUS, "Custom allocation failed with status code: 503");
}

#[tokio::test]
async fn slow_webhook_times_out() {
    let app = Router::new().route(
        "/",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "{}"
        }),
    );
    let addr = serve(app).await;
    let settings = WebhookSettings { total_timeout: Duration::from_millis(300), ..WebhookSettings::default() };
    let started = std::time::Instant::now();
    assert_failure(
        call(settings, &format!("http://{addr}/"), true).await,
        WEBHOOK_TIMEOUT,
        "Custom allocation webhook did not answer within 0.3 s",
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn invalid_answers_fail() {
    let app = Router::new()
        .route("/text", post(|| async { "this is not json" }))
        .route("/nohub", post(|| async { r#"{"payload":{}}"# }))
        .route("/evil", post(|| async { r#"{"iotHubHostName":"evil.example.org"}"# }));
    let addr = serve(app).await;
    assert_failure(
        call(WebhookSettings::default(), &format!("http://{addr}/text"), true).await,
        WEBHOOK_BAD_RESPONSE,
        "Custom allocation webhook answered with invalid JSON (expected ident at line 1 column 2)",
    );
    assert_failure(
        call(WebhookSettings::default(), &format!("http://{addr}/nohub"), true).await,
        WEBHOOK_BAD_RESPONSE,
        "Custom allocation webhook answered with an invalid AllocationResponse (missing field `iotHubHostName`)",
    );
    // A hub outside the offer passes the adapter; the core's one check (applied to every allocator's answer,
    // see core tests/custom_allocation.rs) fails the registration with it.
    let evil = call(WebhookSettings::default(), &format!("http://{addr}/evil"), true).await.expect("passed through");
    assert_failure(
        typed(&request("dev-1", None, &HUBS)).check_offered(evil),
        HUB_NOT_LINKED,
        "Custom allocation chose hub 'evil.example.org', which is not one of the linked hubs offered",
    );
}

#[tokio::test]
async fn oversize_answers_are_cut_off() {
    let big = format!(r#"{{"iotHubHostName":"{}","payload":"{}"}}"#, HUBS[0], "x".repeat(100_000));
    let app = Router::new().route("/", post(move || async move { big }));
    let addr = serve(app).await;
    assert_failure(
        call(WebhookSettings::default(), &format!("http://{addr}/"), true).await,
        WEBHOOK_RESPONSE_TOO_LARGE,
        "Custom allocation webhook answered with more than 65536 bytes",
    );
}

/// The refusal says only that the target is not allowed: neither the URL's host nor the resolved address.
const REFUSED: &str =
    "Custom allocation webhook target is not allowed (private, loopback and link-local addresses are not allowed here)";

#[tokio::test]
async fn private_targets_are_refused_unless_the_instance_allows_them() {
    let addr = serve(Router::new().route("/", post(echo))).await;
    let port = addr.port();
    // A literal loopback address.
    assert_failure(
        call(WebhookSettings::default(), &format!("https://127.0.0.1:{port}/"), false).await,
        WEBHOOK_FORBIDDEN_TARGET,
        REFUSED,
    );
    // A name that resolves to loopback: refused on the resolved address.
    assert_failure(
        call(WebhookSettings::default(), &format!("https://localhost:{port}/"), false).await,
        WEBHOOK_FORBIDDEN_TARGET,
        REFUSED,
    );
    // Link-local (cloud metadata) and IPv6 loopback.
    for url in ["https://169.254.169.254/latest/meta-data", "https://[::1]:1/"] {
        let r = call(WebhookSettings::default(), url, false).await;
        assert_eq!(r.unwrap_err().code, WEBHOOK_FORBIDDEN_TARGET, "{url}");
    }
    // Plain http is refused for instances that do not allow private targets.
    assert_failure(
        call(WebhookSettings::default(), &format!("http://{addr}/"), false).await,
        WEBHOOK_BAD_URL,
        "Custom allocation webhook URL is invalid: it must use https",
    );
    // Allowed explicitly: the same server answers.
    assert!(call(WebhookSettings::default(), &format!("http://localhost:{port}/"), true).await.is_ok());
}

#[tokio::test]
async fn an_instance_cannot_open_private_targets_unless_the_deployment_permits_them() {
    let addr = serve(Router::new().route("/", post(echo))).await;
    let h = Harness::with(PolicySettings::default());
    for url in [format!("http://localhost:{}/", addr.port()), format!("https://127.0.0.1:{}/", addr.port())] {
        let r = h.allocator.allocate(&instance(true), &webhook(&url), &typed(&request("dev-1", None, &HUBS))).await;
        let code = r.unwrap_err().code;
        assert!(code == WEBHOOK_FORBIDDEN_TARGET || code == WEBHOOK_BAD_URL, "{url}: {code}");
    }
}

#[tokio::test]
async fn unreachable_webhook_fails() {
    // Bind then drop a listener: nothing listens on that port.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    assert_failure(
        call(WebhookSettings::default(), &format!("http://127.0.0.1:{port}/"), true).await,
        WEBHOOK_UNREACHABLE,
        "Custom allocation webhook could not be reached",
    );
}
