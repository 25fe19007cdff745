//! TPM attestation over the device API: the 401 challenge's body, and the signed register's answer. (The key the
//! device's TPM would hold is read from the store here; tests/tpm does it with a real software TPM.)

use axum::http::Method;
use serde_json::{Value, json};

use crate::common::*;

fn fixture_tpm() -> Value {
    let all: Value = serde_json::from_str(include_str!("../../../core/tests/fixtures/tpm.json")).unwrap();
    all["a"].clone()
}

fn register(tenant: &Tenant, id: &str, tpm: &Value, authorization: Option<String>) -> Call {
    let call = Call::new(Method::PUT, format!("/{}/registrations/{id}/register?api-version={DEVICE_V}", tenant.scope))
        .json(&json!({ "registrationId": id, "tpm": tpm }));
    match authorization {
        Some(token) => call.header("authorization", token),
        None => call,
    }
}

#[tokio::test]
async fn tpm_challenge_and_signed_register() {
    let h = Harness::new().await;
    let tpm = fixture_tpm();
    let enrollment = json!({ "registrationId": "tpm-1", "attestation": { "type": "tpm",
        "tpm": { "endorsementKey": tpm["endorsementKey"] } } });
    h.send(h.service(&h.a, Method::PUT, "/enrollments/tpm-1").json(&enrollment)).await.assert_ok(200);

    let challenge = h.send(register(&h.a, "tpm-1", &tpm, None)).await;
    challenge.assert_error(401, 401_003);
    let blob = challenge.body["authenticationKey"].as_str().expect("authenticationKey").to_string();
    assert_eq!(challenge.body["keyName"], "registration");

    let stored = h.dps.store().get_tpm_challenge(&h.a.scope, "tpm-1").await.unwrap().unwrap();
    let token = device_token(&h.a.scope, "tpm-1", &stored.key, in_an_hour());
    let got = h.send(register(&h.a, "tpm-1", &tpm, Some(token.clone()))).await;
    got.assert_ok(202);
    assert_eq!(got.body["status"], "assigned");
    let state = &got.body["registrationState"];
    assert_eq!(state["tpm"]["authenticationKey"], blob.as_str());
    assert!(state.get("symmetricKey").is_none());

    // The service API's view of the record has no attestation part.
    let record = h.send(h.service(&h.a, Method::GET, "/registrations/tpm-1")).await;
    record.assert_ok(200);
    assert!(record.body.get("tpm").is_none(), "{}", record.body);

    let replay = h.send(register(&h.a, "tpm-1", &tpm, Some(token))).await;
    replay.assert_error(401, 401_002);
    assert!(replay.body["message"].as_str().unwrap().contains("already used"));
    assert!(replay.body.get("authenticationKey").is_none());
}

#[tokio::test]
async fn malformed_tpm_bodies_are_400() {
    let h = Harness::new().await;
    let bad = json!({ "endorsementKey": "AAAA", "storageRootKey": fixture_tpm()["storageRootKey"] });
    let got = h.send(register(&h.a, "tpm-1", &bad, None)).await;
    got.assert_error(400, 400_004);
    assert!(got.body["message"].as_str().unwrap().contains("tpm.endorsementKey"), "{}", got.body);
    let not_an_object = h.send(register(&h.a, "tpm-1", &json!("x"), None)).await;
    assert_eq!(not_an_object.status.as_u16(), 400);
}
