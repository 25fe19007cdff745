//! HTTP-layer errors: every one answered with the Azure body and the tracking ID.

use axum::http::Method;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn unknown_routes_and_methods() {
    let h = Harness::new().await;
    h.send(h.service(&h.a, Method::GET, "/nothing/here")).await.assert_error(404, 404000);
    h.send(Call::new(Method::GET, "/")).await.assert_error(404, 404000);
    let got = h.send(h.service(&h.a, Method::PATCH, "/enrollments/dev-1")).await;
    got.assert_error(405, 405001);
    assert!(got.header("allow").is_some());
    let got = h.send(Call::new(Method::DELETE, format!("/{}/registrations/dev-1/register", h.a.scope))).await;
    got.assert_error(405, 405001);
}

#[tokio::test]
async fn every_answer_carries_a_fresh_tracking_id() {
    let h = Harness::new().await;
    let one = h.send(h.service(&h.a, Method::GET, "/config")).await;
    let two = h.send(h.service(&h.a, Method::GET, "/config")).await;
    one.assert_ok(200);
    let (a, b) = (one.header("x-ms-request-id").unwrap(), two.header("x-ms-request-id").unwrap());
    assert_ne!(a, b);
    assert!(uuid::Uuid::parse_str(a).is_ok());
}

#[tokio::test]
async fn oversized_bodies_are_413_even_before_reading() {
    let h = Harness::new().await;
    let big = vec![b' '; dps_api::MAX_BODY_BYTES + 1];
    let got = h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").raw(big, "application/json")).await;
    got.assert_error(413, 413001);
    let big = vec![b' '; dps_api::MAX_BODY_BYTES + 1];
    let got =
        h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").raw(big, "application/json").without_length()).await;
    got.assert_error(413, 413001);
    h.send(h.service(&h.a, Method::GET, "/enrollments/dev-1")).await.assert_error(404, 404001);
    let deep = format!("{}{}", "[".repeat(33), "]".repeat(33));
    let got = h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").raw(deep, "application/json")).await;
    got.assert_error(400, 400003);
    let fine = json!({ "registrationId": "dev-1", "attestation": { "type": "symmetricKey" }, "initialTwin": { "tags": { "a": { "b": { "c": 1 } } } } });
    h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").json(&fine)).await.assert_ok(200);
}

#[tokio::test]
async fn the_service_router_alone_serves_only_the_service_api() {
    let h = Harness::new().await;
    let service = dps_api::service_router(h.dps.clone());
    h.service(&h.a, Method::GET, "/config").send(&service).await.assert_ok(200);
    let got = Call::new(Method::PUT, format!("/{}/registrations/dev-1/register?api-version={DEVICE_V}", h.a.scope))
        .send(&service)
        .await;
    got.assert_error(404, 404000);
}
