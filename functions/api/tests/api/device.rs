//! The device API: register, operation status, registration status, and what it refuses.

use axum::http::Method;
use base64::Engine;
use dps_core::sas;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn register_with_an_individual_key_is_assigned_in_one_round_trip() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    let got = h
        .send(h.device(&h.a, Method::PUT, "/register", "dev-1", &key).json(&json!({ "registrationId": "dev-1" })))
        .await;
    got.assert_ok(202);
    assert!(got.header("retry-after").is_none(), "no Retry-After once assigned");
    let body = &got.body;
    assert_eq!(body["status"], "assigned");
    assert!(body["operationId"].as_str().is_some_and(|s| !s.is_empty()));
    let state = &body["registrationState"];
    assert_eq!(state["registrationId"], "dev-1");
    assert_eq!(state["assignedHub"], h.a.hub);
    assert_eq!(state["deviceId"], "dev-1");
    assert_eq!(state["status"], "assigned");
    assert_eq!(state["substatus"], "initialAssignment");
    assert_eq!(state["symmetricKey"], json!({}));
    assert!(state["createdDateTimeUtc"].is_string() && state["lastUpdatedDateTimeUtc"].is_string());
    // Azure shows devices the base64 of the quoted etag.
    let etag = base64::engine::general_purpose::STANDARD.decode(state["etag"].as_str().unwrap()).unwrap();
    assert!(etag.starts_with(b"\"") && etag.ends_with(b"\""));
    // Internal fields stay inside.
    for internal in ["operationId", "initialHub", "attestationType", "enrollmentGroupId"] {
        assert!(state.get(internal).is_none(), "{internal} leaked");
    }
}

#[tokio::test]
async fn register_with_a_group_derived_key_names_the_group() {
    let h = Harness::new().await;
    let group_key = h.enroll_group(&h.a, "fleet").await;
    let device_key = sas::derive_device_key(&group_key, "sensor-42").unwrap();
    let got = h.send(h.device(&h.a, Method::PUT, "/register", "sensor-42", &device_key)).await;
    got.assert_ok(202);
    assert_eq!(got.body["status"], "assigned");
    assert_eq!(got.body["registrationState"]["symmetricKey"], json!({ "enrollmentGroupId": "fleet" }));
    // The group key itself is not a device key.
    let got = h.send(h.device(&h.a, Method::PUT, "/register", "sensor-43", &group_key)).await;
    got.assert_error(401, 401002);
}

#[tokio::test]
async fn operation_status_and_registration_status_answer_from_the_record() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    let registered = h.send(h.device(&h.a, Method::PUT, "/register", "dev-1", &key)).await;
    let op = registered.body["operationId"].as_str().unwrap().to_string();

    // The Node SDK sends "{}" with a JSON content type on this GET.
    let got = h
        .send(h.device(&h.a, Method::GET, &format!("/operations/{op}"), "dev-1", &key).raw("{}", "application/json"))
        .await;
    got.assert_ok(200);
    assert_eq!(got.body["operationId"], op);
    assert_eq!(got.body["status"], "assigned");
    assert_eq!(got.body["registrationState"]["assignedHub"], h.a.hub);

    let got = h.send(h.device(&h.a, Method::GET, "/operations/5.0000.unknown", "dev-1", &key)).await;
    got.assert_error(404, 404001);

    let got = h.send(h.device(&h.a, Method::POST, "", "dev-1", &key).json(&json!({ "registrationId": "dev-1" }))).await;
    got.assert_ok(200);
    assert_eq!(got.body["registrationId"], "dev-1", "not wrapped");
    assert_eq!(got.body["assignedHub"], h.a.hub);
    assert!(got.body.get("operationId").is_none());
}

#[tokio::test]
async fn status_lookup_of_an_enrolled_but_unregistered_device_is_404() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    h.send(h.device(&h.a, Method::POST, "", "dev-1", &key)).await.assert_error(404, 404001);
}

#[tokio::test]
async fn a_disabled_enrollment_answers_disabled() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    let body = json!({ "registrationId": "dev-1", "attestation": { "type": "symmetricKey" }, "provisioningStatus": "disabled" });
    h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").json(&body)).await.assert_ok(200);
    let got = h.send(h.device(&h.a, Method::PUT, "/register", "dev-1", &key)).await;
    got.assert_ok(202);
    assert_eq!(got.body["status"], "disabled");
    assert!(got.header("retry-after").is_none());
}

#[tokio::test]
async fn every_listed_api_version_is_accepted_and_others_refused() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    for v in dps_api::API_VERSIONS {
        let token = device_token(&h.a.scope, "dev-1", &key, in_an_hour());
        let got = h
            .send(
                Call::new(Method::PUT, format!("/{}/registrations/dev-1/register?api-version={v}", h.a.scope))
                    .header("authorization", token),
            )
            .await;
        got.assert_ok(202);
    }
    let token = device_token(&h.a.scope, "dev-1", &key, in_an_hour());
    for uri in [
        format!("/{}/registrations/dev-1/register", h.a.scope),
        format!("/{}/registrations/dev-1/register?api-version=2020-01-01", h.a.scope),
    ] {
        let got = h.send(Call::new(Method::PUT, uri).header("authorization", token.clone())).await;
        got.assert_error(400, 400001);
    }
}

#[tokio::test]
async fn bad_tokens_are_401_and_leave_no_record() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    let other_key = h.enroll(&h.a, "dev-2").await;
    let scope = &h.a.scope;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let uri = format!("/{scope}/registrations/dev-1/register?api-version={DEVICE_V}");
    let forged = {
        let good = device_token(scope, "dev-1", &key, in_an_hour());
        let (head, _) = good.split_once("&sig=").unwrap();
        let (_, tail) = good.split_once("&se=").unwrap();
        format!("{head}&sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA%3D&se={tail}")
    };
    let cases = [
        ("expired", device_token(scope, "dev-1", &key, now - 10)),
        ("forged", forged),
        ("another device's key", device_token(scope, "dev-1", &other_key, in_an_hour())),
        ("wrong resource", device_token(scope, "dev-2", &key, in_an_hour())),
        ("wrong scope", device_token(&h.b.scope, "dev-1", &key, in_an_hour())),
        ("not a SAS", "Bearer abc".to_string()),
    ];
    for (what, token) in cases {
        let got = h.send(Call::new(Method::PUT, uri.clone()).header("authorization", token)).await;
        assert_eq!(got.status.as_u16(), 401, "{what}");
        got.assert_error(401, 401002);
    }
    let got = h.send(Call::new(Method::PUT, uri.clone())).await;
    got.assert_error(401, 401002);
    // Nothing was registered.
    h.send(h.service(&h.a, Method::GET, "/registrations/dev-1")).await.assert_error(404, 404001);
}

#[tokio::test]
async fn unknown_scope_and_bad_registration_ids_are_refused() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    let token = device_token("0ne99999999", "dev-1", &key, in_an_hour());
    let got = h
        .send(
            Call::new(Method::PUT, format!("/0ne99999999/registrations/dev-1/register?api-version={DEVICE_V}"))
                .header("authorization", token),
        )
        .await;
    // As a bad token is answered: outsiders cannot tell which ID scopes exist.
    got.assert_error(401, 401002);
    let wrong_key = h
        .send(
            Call::new(Method::PUT, format!("/{}/registrations/dev-1/register?api-version={DEVICE_V}", h.a.scope))
                .header(
                    "authorization",
                    device_token(&h.a.scope, "dev-1", &dps_core::sas::generate_key(), in_an_hour()),
                ),
        )
        .await;
    assert_eq!(got.body["message"], wrong_key.body["message"], "the same answer as a wrong key");

    for bad in ["dev.", "-dev", "dev%20one", "dev%2Fone", &"x".repeat(129), "d%C3%A9v"] {
        let got = h
            .send(
                Call::new(Method::PUT, format!("/{}/registrations/{bad}/register?api-version={DEVICE_V}", h.a.scope))
                    .header("authorization", device_token(&h.a.scope, bad, &key, in_an_hour())),
            )
            .await;
        got.assert_error(400, 400004);
    }
}

#[tokio::test]
async fn malformed_bodies_are_refused_before_any_work() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    let call = || h.device(&h.a, Method::PUT, "/register", "dev-1", &key);
    h.send(call().raw("{\"registrationId\":", "application/json")).await.assert_error(400, 400002);
    h.send(call().raw("{\"registrationId\":\"dev-1\"}", "text/plain")).await.assert_error(415, 415001);
    h.send(call().raw("{\"registrationId\":\"dev-1\"}", "")).await.assert_error(415, 415001);
    let deep = format!("{{\"payload\":{}1{}}}", "[".repeat(40), "]".repeat(40));
    h.send(call().raw(deep, "application/json")).await.assert_error(400, 400003);
    let big = format!("{{\"registrationId\":\"dev-1\",\"payload\":{{\"x\":\"{}\"}}}}", "a".repeat(100 * 1024));
    h.send(call().raw(big, "application/json")).await.assert_error(413, 413001);
    let got = h.send(call().json(&json!({ "registrationId": "dev-2" }))).await;
    got.assert_error(400, 400004);
    // None of them registered the device.
    h.send(h.service(&h.a, Method::GET, "/registrations/dev-1")).await.assert_error(404, 404001);
    // A charset parameter is fine.
    h.send(call().raw("{\"registrationId\":\"dev-1\"}", "application/json;charset=UTF-8")).await.assert_ok(202);
}

#[tokio::test]
async fn the_device_router_alone_serves_only_the_device_api() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    let device = dps_api::device_router(h.dps.clone());
    h.device(&h.a, Method::PUT, "/register", "dev-1", &key).send(&device).await.assert_ok(202);
    h.service(&h.a, Method::GET, "/enrollments/dev-1").send(&device).await.assert_error(404, 404000);
}

#[tokio::test]
async fn path_segments_are_percent_decoded() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "line:7.dev-1").await;
    let token = device_token(&h.a.scope, "line:7.dev-1", &key, in_an_hour());
    let got = h
        .send(
            Call::new(
                Method::PUT,
                format!("/{}/registrations/line%3A7.dev-1/register?api-version={DEVICE_V}", h.a.scope),
            )
            .header("authorization", token),
        )
        .await;
    got.assert_ok(202);
    assert_eq!(got.body["registrationState"]["registrationId"], "line:7.dev-1");
    let got = h.send(h.service(&h.a, Method::GET, "/registrations/line%3a7.dev-1")).await;
    got.assert_ok(200);
}
