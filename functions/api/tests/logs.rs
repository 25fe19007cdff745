//! What reaches the logs: the tracking ID of every request, never a key or a SAS signature.
//! Its own test binary, so that the capturing subscriber is the process-wide one (a thread-local default races
//! with other tests over tracing's per-callsite interest cache).

#[allow(dead_code)]
#[path = "api/common.rs"]
mod common;

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::http::Method;
use dps_core::sas;
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use common::*;

/// A subscriber that writes every span field and event field into one string.
#[derive(Clone, Default)]
struct Capture {
    text: Arc<Mutex<String>>,
    next_id: Arc<Mutex<u64>>,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut text = self.text.lock().unwrap();
        text.push_str("\nspan");
        span.record(&mut Fields(&mut text));
        let mut id = self.next_id.lock().unwrap();
        *id += 1;
        Id::from_u64(*id)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut text = self.text.lock().unwrap();
        text.push_str("\nrecord");
        values.record(&mut Fields(&mut text));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut text = self.text.lock().unwrap();
        text.push_str("\nevent");
        event.record(&mut Fields(&mut text));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test]
async fn logs_carry_tracking_ids_and_no_secrets() {
    let capture = Capture::default();
    tracing::subscriber::set_global_default(capture.clone()).expect("the only subscriber of this binary");
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    let group_key = h.enroll_group(&h.a, "fleet").await;
    let device_token = device_token(&h.a.scope, "dev-1", &key, in_an_hour());
    let registered = h
        .send(
            Call::new(Method::PUT, format!("/{}/registrations/dev-1/register?api-version={DEVICE_V}", h.a.scope))
                .header("authorization", device_token.clone()),
        )
        .await;
    registered.assert_ok(202);
    let forged = sas::token(&h.a.host, &sas::generate_key(), in_an_hour(), Some("provisioningserviceowner")).unwrap();
    let refused = h
        .send(
            Call::new(Method::GET, "/enrollments/dev-1?api-version=2021-10-01")
                .header("host", h.a.host.clone())
                .header("authorization", forged.clone()),
        )
        .await;
    refused.assert_error(401, 401002);
    let policy_key = sas::generate_key();
    h.send(
        h.service(&h.a, Method::PUT, "/config/authorizationPolicies/ops")
            .json(&json!({ "rights": ["ServiceConfig"], "primaryKey": policy_key })),
    )
    .await
    .assert_ok(200);

    // Secrets sent in malformed positions (wrong type, unknown variant, bulk items) never come back in the 400
    // or reach the logs: body errors name the field and the position, not the value.
    let sent = sas::generate_key();
    let bad_bodies = [
        (
            "/enrollments/dev-x",
            json!({ "registrationId": "dev-x", "attestation": { "type": "symmetricKey", "symmetricKey": sent } }),
        ),
        ("/enrollments/dev-x", json!({ "registrationId": "dev-x", "attestation": { "type": sent } })),
        (
            "/enrollments/dev-x",
            json!({ "registrationId": "dev-x", "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": [sent] } } }),
        ),
        (
            "/enrollmentGroups/g-x",
            json!({ "enrollmentGroupId": "g-x", "attestation": { "type": "symmetricKey", "symmetricKey": { "secondaryKey": { "k": sent } } } }),
        ),
    ];
    let mut answers = Vec::new();
    for (path, body) in bad_bodies {
        answers.push(h.send(h.service(&h.a, Method::PUT, path).json(&body)).await);
    }
    let bulk = json!({ "mode": "create", "enrollments": [{ "registrationId": "b-1", "attestation": { "type": "symmetricKey", "symmetricKey": sent } }] });
    answers.push(h.send(h.service(&h.a, Method::POST, "/enrollments").json(&bulk)).await);
    answers.push(h.send(h.service(&h.a, Method::POST, "/enrollments").json(&json!({ "mode": sent }))).await);
    for answer in &answers {
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        let shown = answer.body.to_string();
        assert!(!shown.contains(&sent), "the rejected value is echoed: {shown}");
        assert!(shown.contains("line") && shown.contains("column"), "the position is named: {shown}");
    }
    // The field path, where serde can track it (not inside the enrollments' flattened shared settings).
    assert!(answers[5].body.to_string().contains("'mode'"), "the field path is named: {}", answers[5].body);

    let text = capture.text.lock().unwrap().clone();
    assert!(!text.contains(&sent), "a rejected value reached the logs");
    for answer in [&registered, &refused] {
        assert!(text.contains(answer.header("x-ms-request-id").unwrap()), "tracking ID in the logs");
    }
    assert!(text.contains(&h.a.scope), "the scope is a span field");
    let signature = |token: &str| token.split("sig=").nth(1).unwrap().split('&').next().unwrap().to_string();
    for secret in [
        key,
        group_key,
        policy_key,
        h.a.owner_key.clone(),
        signature(&device_token),
        signature(&forged),
        signature(&owner_token(&h.a)),
    ] {
        assert!(!text.contains(&secret), "a secret reached the logs");
    }
}
