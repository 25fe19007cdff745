//! docs/openapi.json against the running router: served at `/openapi.json` without credentials, valid OpenAPI 3.1,
//! and every documented operation's real answers (successes and errors) valid against the documented responses.
//! The last two are checked by `tests/openapi_check.py` with the `.venv` that scripts/setup/moto.sh installs
//! (openapi-spec-validator, jsonschema); a missing venv fails the test, it is never skipped.

use std::path::PathBuf;
use std::process::Command;

use axum::http::Method;
use dps_attestation::testing::{self, KeyKind};
use dps_core::sas;
use serde_json::{Value, json};

use crate::common::*;

/// The answers the router gave, as the checker reads them.
#[derive(Default)]
struct Samples(Vec<Value>);

impl Samples {
    async fn send(&mut self, h: &Harness, call: Call) -> Answer {
        let (method, uri) = (call.method.to_string(), call.uri.clone());
        let got = h.send(call).await;
        let headers: serde_json::Map<String, Value> =
            got.headers.iter().map(|(k, v)| (k.as_str().to_string(), json!(v.to_str().unwrap_or_default()))).collect();
        self.0.push(json!({
            "method": method, "uri": uri, "status": got.status.as_u16(), "headers": headers,
            "body": got.body.clone(),
        }));
        got
    }
}

fn python() -> PathBuf {
    std::env::var_os("DPS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"))
}

/// Run the checker on the document and the samples; panics with its report unless it passes.
fn check(samples: &Samples) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(python());
    command.arg(dir.join("tests/openapi_check.py")).arg(dir.join("../../docs/openapi.json"));
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&samples.0).unwrap()).unwrap();
    command.arg(file.path());
    let out = command.output().unwrap_or_else(|e| {
        panic!(
            "cannot run {} ({e}): run scripts/setup/moto.sh (installs openapi-spec-validator into .venv), or set \
             DPS_PYTHON to a Python that has it",
            python().display()
        )
    });
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "docs/openapi.json does not hold:\n{report}");
    report
}

#[tokio::test]
async fn the_document_is_served_without_credentials_on_both_routers() {
    let h = Harness::new().await;
    let service = dps_api::service_router(h.dps.clone());
    let file = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"));
    assert_eq!(dps_api::OPENAPI_JSON, file.unwrap(), "the binary serves docs/openapi.json as it is");
    for (router, path) in [(&h.app, "/openapi.json"), (&service, "/openapi.json"), (&service, "/OpenAPI.json/")] {
        let got = Call::new(Method::GET, path).header("host", "unknown.dps.test").send(router).await;
        got.assert_ok(200);
        assert_eq!(got.body, serde_json::from_str::<Value>(dps_api::OPENAPI_JSON).unwrap());
        assert_eq!(got.body["openapi"], "3.1.0");
    }
    // Only GET: the route table's other methods do not reach it.
    Call::new(Method::POST, "/openapi.json").send(&h.app).await.assert_error(405, 405001);
}

/// One run of the checker (a Python start costs about a second): the document is valid OpenAPI 3.1, its examples
/// fit its schemas, and the answers below, reaching every documented operation, fit the documented responses.
#[tokio::test]
async fn the_document_is_valid_openapi_3_1_and_real_answers_match_it() {
    let h = Harness::with_policies().await;
    let mut s = Samples::default();
    let a = &h.a;
    let call = |method: Method, path: &str| h.service(a, method, path);

    // The document itself.
    s.send(&h, Call::new(Method::GET, "/openapi.json").header("host", a.host.clone())).await.assert_ok(200);

    // Individual enrollments: write, read, keys, page, bulk, conditional and refused writes, delete.
    let enrollment = |id: &str| json!({ "registrationId": id, "attestation": { "type": "symmetricKey" } });
    let created = s.send(&h, call(Method::PUT, "/enrollments/dev-1").json(&enrollment("dev-1"))).await;
    created.assert_ok(200);
    let key = h.attestation_key(a, "enrollments", "dev-1").await;
    s.send(&h, call(Method::GET, "/enrollments/dev-1")).await.assert_ok(200);
    s.send(&h, call(Method::POST, "/enrollments/dev-1/attestationmechanism")).await.assert_ok(200);
    let bulk = json!({ "mode": "create", "enrollments": [enrollment("dev-2"), enrollment("dev-1")] });
    let got = s.send(&h, call(Method::POST, "/enrollments").json(&bulk)).await;
    got.assert_ok(200);
    assert_eq!(got.body["isSuccessful"], false, "dev-1 exists: {}", got.body);
    let page = s
        .send(
            &h,
            call(Method::POST, "/enrollments/query").header("x-ms-max-item-count", "1").json(&json!({"query": "*"})),
        )
        .await;
    page.assert_ok(200);
    let next = page.header("x-ms-continuation").expect("a second page").to_string();
    s.send(&h, call(Method::POST, "/enrollments/query").header("x-ms-continuation", next)).await.assert_ok(200);
    let stale = r#""not-the-etag""#;
    s.send(&h, call(Method::PUT, "/enrollments/dev-2").header("if-match", stale).json(&enrollment("dev-2")))
        .await
        .assert_error(412, 412001);
    s.send(&h, call(Method::PUT, "/enrollments/dev-2").raw("{}", "text/plain")).await.assert_error(415, 415001);
    s.send(&h, Call::new(Method::GET, "/enrollments/dev-2").header("host", a.host.clone()))
        .await
        .assert_error(400, 400001);
    s.send(&h, call(Method::DELETE, "/enrollments/dev-2")).await.assert_ok(204);
    s.send(&h, call(Method::GET, "/enrollments/dev-2")).await.assert_error(404, 404001);

    // Enrollment groups, in the lower-case spelling the Node SDK sends too.
    let group = |id: &str| json!({ "enrollmentGroupId": id, "attestation": { "type": "symmetricKey" } });
    s.send(&h, call(Method::PUT, "/enrollmentGroups/grp-1").json(&group("grp-1"))).await.assert_ok(200);
    let group_key = h.attestation_key(a, "enrollmentGroups", "grp-1").await;
    s.send(&h, call(Method::GET, "/enrollmentgroups/grp-1")).await.assert_ok(200);
    s.send(&h, call(Method::POST, "/enrollmentgroups/grp-1/attestationmechanism")).await.assert_ok(200);
    let bulk = json!({ "mode": "create", "enrollmentGroups": [group("grp-2")] });
    s.send(&h, call(Method::POST, "/enrollmentGroups").json(&bulk)).await.assert_ok(200);
    s.send(&h, call(Method::POST, "/enrollmentGroups/query")).await.assert_ok(200);
    s.send(&h, call(Method::DELETE, "/enrollmentGroups/grp-2")).await.assert_ok(204);

    // Registration records: two devices register (device API), then the service API reads and deletes records.
    h.send(h.device(a, Method::PUT, "/register", "dev-1", &key)).await.assert_ok(202);
    let device_key = sas::derive_device_key(&group_key, "grp-dev-1").unwrap();
    h.send(h.device(a, Method::PUT, "/register", "grp-dev-1", &device_key)).await.assert_ok(202);
    s.send(&h, call(Method::GET, "/registrations/dev-1")).await.assert_ok(200);
    let got = s.send(&h, call(Method::POST, "/registrations/grp-1/query").json(&json!({"query": "*"}))).await;
    got.assert_ok(200);
    assert_eq!(got.body.as_array().map(Vec::len), Some(1), "{}", got.body);
    s.send(&h, call(Method::DELETE, "/registrations/dev-1")).await.assert_ok(204);
    s.send(&h, call(Method::GET, "/registrations/dev-1")).await.assert_error(404, 404001);

    // Instance configuration.
    let config = s.send(&h, call(Method::GET, "/config")).await;
    config.assert_ok(200);
    s.send(&h, call(Method::PUT, "/config").json(&config.body)).await.assert_ok(200);
    let hub = json!({ "allocationWeight": 2, "location": "eu-west-1" });
    s.send(&h, call(Method::PUT, "/config/linkedHubs/hub-2.example.net").json(&hub)).await.assert_ok(200);
    s.send(&h, call(Method::GET, "/config/linkedHubs")).await.assert_ok(200);
    s.send(&h, call(Method::GET, "/config/linkedHubs/hub-2.example.net")).await.assert_ok(200);
    s.send(&h, call(Method::DELETE, "/config/linkedHubs/hub-2.example.net")).await.assert_ok(204);
    let reader = json!({ "rights": ["EnrollmentRead"] });
    s.send(&h, call(Method::PUT, "/config/authorizationPolicies/reader").json(&reader)).await.assert_ok(200);
    s.send(&h, call(Method::GET, "/config/authorizationPolicies")).await.assert_ok(200);
    s.send(&h, call(Method::GET, "/config/authorizationPolicies/reader")).await.assert_ok(200);
    s.send(&h, call(Method::DELETE, "/config/authorizationPolicies/reader")).await.assert_ok(204);
    let ca = testing::root("Fleet Root", KeyKind::EcdsaP256);
    let uploaded =
        s.send(&h, call(Method::PUT, "/config/certificates/fleet").json(&json!({ "certificate": ca.pem }))).await;
    uploaded.assert_ok(200);
    let code = uploaded.body["verificationCode"].as_str().unwrap().to_string();
    s.send(&h, call(Method::GET, "/config/certificates")).await.assert_ok(200);
    s.send(&h, call(Method::GET, "/config/certificates/fleet")).await.assert_ok(200);
    let proof = ca.device(&code, KeyKind::EcdsaP256);
    let verify = json!({ "certificate": proof.pem });
    let got = s.send(&h, call(Method::POST, "/config/certificates/fleet/verify").json(&verify)).await;
    got.assert_ok(200);
    assert_eq!(got.body["isVerified"], true);
    s.send(&h, call(Method::DELETE, "/config/certificates/fleet")).await.assert_ok(204);
    s.send(&h, call(Method::GET, "/config/operations")).await.assert_ok(200);
    s.send(&h, call(Method::GET, "/config/webhookSigningKey")).await.assert_ok(200);
    s.send(&h, Call::new(Method::GET, "/config").header("host", a.host.clone())).await.assert_error(401, 401002);
    s.send(&h, call(Method::POST, "/config")).await.assert_error(405, 405001);
    s.send(&h, call(Method::DELETE, "/config/authorizationPolicies/provisioningserviceowner"))
        .await
        .assert_error(409, 409001);
    let huge =
        json!({ "registrationId": "dev-3", "attestation": { "type": "symmetricKey" }, "pad": "x".repeat(100_000) });
    s.send(&h, call(Method::PUT, "/enrollments/dev-3").json(&huge)).await.assert_error(413, 413001);

    // WebAssembly policies.
    let module =
        wat::parse_file(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/fixtures/first-hub.wat"))
            .expect("the first-hub fixture assembles");
    s.send(&h, call(Method::PUT, "/policies/first").raw(module, "application/wasm")).await.assert_ok(200);
    s.send(&h, call(Method::GET, "/policies")).await.assert_ok(200);
    s.send(&h, call(Method::GET, "/policies/first")).await.assert_ok(200);
    let sample = json!({
        "individualEnrollment": enrollment("dev-9"),
        "deviceRuntimeContext": { "registrationId": "dev-9", "symmetricKey": {} },
    });
    let got = s.send(&h, call(Method::POST, "/policies/first/dryRun").json(&sample)).await;
    got.assert_ok(200);
    assert_eq!(got.body["status"], "assigned", "{}", got.body);
    s.send(&h, call(Method::DELETE, "/policies/first")).await.assert_ok(204);
    s.send(&h, call(Method::GET, "/policies/first")).await.assert_error(404, 404001);

    let report = check(&s);
    assert!(report.contains("operations reached"), "{report}");
}
