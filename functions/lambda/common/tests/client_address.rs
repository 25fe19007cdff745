//! The per-address budget of failed attestations on Lambda: the device's address comes from the request context
//! AWS fills in (function URL / API Gateway `sourceIp`) or from the entry an ALB appended to `X-Forwarded-For`,
//! never from what the client put first. Committed event fixtures, converted by lambda_http as the runtime does.

use std::sync::Arc;

use dps_core::memory::MemoryStore;
use dps_core::usecases::{NewInstance, now};
use dps_core::{Dps, Settings, sas};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

async fn scope_of(dps: &Dps) -> String {
    let new = NewInstance { name: "lambda".into(), service_host_name: "svc.example.com".into(), id_scope: None };
    dps.create_instance(new).await.unwrap().id_scope
}

/// A register event of `fixture` for `id`, signed with a key no enrollment has, from `address`.
fn event(fixture: &str, scope: &str, id: &str, address: &str) -> String {
    let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap().replace("{SCOPE}", scope).replace("{ID}", id);
    let mut event: Value = serde_json::from_str(&text).unwrap();
    let junk = "am9rZXItbm90LWEta2V5LW9mLWFueS1lbnJvbGxtZW50";
    let token = sas::token(&format!("{scope}/registrations/{id}"), junk, now().unix_timestamp() + 600, None).unwrap();
    event["headers"]["authorization"] = Value::String(token);
    if let Some(context) = event["requestContext"].get_mut("authentication") {
        *context = Value::Null; // no client certificate in these events
    }
    match fixture {
        "alb-register.json" => event["headers"]["x-forwarded-for"] = Value::String(address.into()),
        _ => event["requestContext"]["http"]["sourceIp"] = Value::String(address.into()),
    }
    event.to_string()
}

async fn serve(dps: &Dps, event: &str) -> (u16, Option<String>, Value) {
    let request = lambda_http::request::from_str(event).expect("a valid Lambda event");
    let router = dps_lambda::client_address::with_client_addresses(dps_api::device_router(dps.clone()));
    let response = router.oneshot(request.map(axum::body::Body::new)).await.unwrap();
    let status = response.status().as_u16();
    let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, retry, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Failures from `address` until the budget answers 429; returns how many were answered 401 first.
async fn exhaust(dps: &Dps, fixture: &str, scope: &str, address: &str) -> usize {
    for n in 0..100 {
        let (status, retry, body) = serve(dps, &event(fixture, scope, &format!("dev-{n}"), address)).await;
        match status {
            401 => continue,
            429 => {
                assert!(retry.is_some(), "429 carries Retry-After: {body}");
                return n;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    panic!("no 429 after 100 failed attestations from {address}");
}

#[tokio::test]
async fn function_url_source_ip_has_its_own_failure_budget() {
    let dps = Dps::new(Arc::new(MemoryStore::new()), Settings::default());
    let scope = scope_of(&dps).await;
    let burst = Settings::default().failed_attestations_per_address.burst as usize;
    let allowed = exhaust(&dps, "apigw-v2-register.json", &scope, "192.0.2.10").await;
    assert_eq!(allowed, burst, "the address's burst, then 429");
    let (status, _, body) = serve(&dps, &event("apigw-v2-register.json", &scope, "other", "192.0.2.11")).await;
    assert_eq!(status, 401, "another address is not limited by the first one's failures: {body}");
}

#[tokio::test]
async fn behind_an_alb_the_entry_the_alb_appended_counts() {
    let dps = Dps::new(Arc::new(MemoryStore::new()), Settings::default());
    let scope = scope_of(&dps).await;
    // The client forges a first entry; the ALB appended the address it saw.
    exhaust(&dps, "alb-register.json", &scope, "203.0.113.9, 192.0.2.20").await;
    let (status, _, _) = serve(&dps, &event("alb-register.json", &scope, "again", "198.51.100.1, 192.0.2.20")).await;
    assert_eq!(status, 429, "a new forged first entry does not escape the budget");
    let (status, _, body) = serve(&dps, &event("alb-register.json", &scope, "fresh", "192.0.2.20, 192.0.2.21")).await;
    assert_eq!(status, 401, "the forged address is not the one judged: {body}");
}
