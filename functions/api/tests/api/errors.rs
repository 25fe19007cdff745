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

#[tokio::test]
async fn refused_updates_leave_the_stored_enrollment_unchanged() {
    let h = Harness::new().await;
    let body = json!({ "registrationId": "dev-1", "attestation": { "type": "symmetricKey" }, "deviceId": "before" });
    let created = h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").json(&body)).await;
    created.assert_ok(200);
    let etag = created.body["etag"].clone();
    let put = || h.service(&h.a, Method::PUT, "/enrollments/dev-1");
    let changed = json!({ "registrationId": "dev-1", "attestation": { "type": "symmetricKey" }, "deviceId": "after" });
    let changed_text = serde_json::to_string(&changed).unwrap();
    h.send(put().raw("{\"registrationId\":\"dev-1\",", "application/json")).await.assert_error(400, 400002);
    h.send(put().raw(changed_text.clone(), "text/json")).await.assert_error(415, 415001);
    h.send(put().raw(changed_text.clone(), "")).await.assert_error(415, 415001);
    let deep = format!(
        "{{\"registrationId\":\"dev-1\",\"initialTwin\":{}{}}}",
        "{\"a\":".repeat(40),
        "1".to_string() + &"}".repeat(40)
    );
    h.send(put().raw(deep, "application/json")).await.assert_error(400, 400003);
    let mut big = changed.clone();
    big["optionalDeviceInformation"] = json!({ "blob": "x".repeat(97 * 1024) });
    h.send(put().json(&big)).await.assert_error(413, 413001);
    h.send(put().header("if-match", "\"not-the-etag\"").json(&changed)).await.assert_error(412, 412001);
    h.send(put().json(&json!({ "registrationId": "dev-1", "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": "c2hvcnQ=" } } })))
        .await
        .assert_error(400, 400004);
    h.send(
        Call::new(Method::PUT, "/enrollments/dev-1?api-version=2021-10-01")
            .header("host", h.a.host.clone())
            .json(&changed),
    )
    .await
    .assert_error(401, 401002);
    let got = h.send(h.service(&h.a, Method::GET, "/enrollments/dev-1")).await;
    assert_eq!(got.body["deviceId"], "before");
    assert_eq!(got.body["etag"], etag);
}

#[tokio::test]
async fn group_if_match_is_enforced() {
    let h = Harness::new().await;
    h.enroll_group(&h.a, "fleet").await;
    let body = json!({ "enrollmentGroupId": "fleet", "attestation": { "type": "symmetricKey" }, "provisioningStatus": "disabled" });
    h.send(h.service(&h.a, Method::PUT, "/enrollmentGroups/fleet").header("if-match", "\"old\"").json(&body))
        .await
        .assert_error(412, 412001);
    h.send(h.service(&h.a, Method::DELETE, "/enrollmentGroups/fleet").header("if-match", "\"old\""))
        .await
        .assert_error(412, 412001);
    let got = h.send(h.service(&h.a, Method::GET, "/enrollmentGroups/fleet")).await;
    assert_eq!(got.body["provisioningStatus"], "enabled");
    let etag = got.body["etag"].as_str().unwrap().to_string();
    h.send(h.service(&h.a, Method::PUT, "/enrollmentGroups/fleet").header("if-match", etag).json(&body))
        .await
        .assert_ok(200);
}

#[tokio::test]
async fn a_service_request_without_a_host_is_refused() {
    let h = Harness::new().await;
    let got = h
        .send(
            Call::new(Method::GET, "/enrollments/dev-1?api-version=2021-10-01")
                .header("authorization", owner_token(&h.a)),
        )
        .await;
    got.assert_error(400, 400004);
    // HTTP/2 carries the host in the URI authority instead of a Host header.
    let got = h
        .send(
            Call::new(Method::GET, format!("https://{}/config?api-version=2021-10-01", h.a.host))
                .header("authorization", owner_token(&h.a)),
        )
        .await;
    got.assert_ok(200);
    assert_eq!(got.body["idScope"], h.a.scope);
}

#[tokio::test]
async fn a_request_past_the_deadline_is_503_through_the_error_table() {
    use axum::routing::get;
    use tower::ServiceExt;
    let slow = axum::Router::new()
        .route("/slow", get(|| async { tokio::time::sleep(std::time::Duration::from_secs(30)).await }))
        .route("/fast", get(|| async { "ok" }));
    let router = dps_api::with_deadline(slow, std::time::Duration::from_millis(50));
    let request = |path: &str| axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();

    let fast = router.clone().oneshot(request("/fast")).await.unwrap();
    assert_eq!(fast.status(), 200, "a quick answer is untouched");

    let answer = router.oneshot(request("/slow")).await.unwrap();
    assert_eq!(answer.status(), 503);
    assert_eq!(answer.headers()["retry-after"], "1");
    let tracking_id = answer.headers()["x-ms-request-id"].to_str().unwrap().to_string();
    let body = axum::body::to_bytes(answer.into_body(), 1 << 16).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["errorCode"], 503001);
    assert_eq!(body["trackingId"], json!(tracking_id));
    assert!(body["message"].as_str().is_some_and(|m| m.contains("tracking ID")), "the table's 5xx message: {body}");
}

#[tokio::test]
async fn an_unknown_service_host_is_answered_as_a_bad_token_is() {
    let h = Harness::new().await;
    let ghost = "ghost.example.net";
    let token = dps_core::sas::token(ghost, &dps_core::sas::generate_key(), in_an_hour(), Some("owner")).unwrap();
    let unknown = h
        .send(
            Call::new(Method::GET, "/enrollments/dev-1?api-version=2021-10-01")
                .header("host", ghost)
                .header("authorization", token),
        )
        .await;
    unknown.assert_error(401, 401002);
    let forged = dps_core::sas::token(&h.a.host, &dps_core::sas::generate_key(), in_an_hour(), Some("owner")).unwrap();
    let bad_key = h
        .send(
            Call::new(Method::GET, "/enrollments/dev-1?api-version=2021-10-01")
                .header("host", h.a.host.clone())
                .header("authorization", forged),
        )
        .await;
    assert_eq!(unknown.body["message"], bad_key.body["message"], "nobody learns which hosts exist");
}
