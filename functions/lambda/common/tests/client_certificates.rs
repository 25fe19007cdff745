//! Device certificates through the Lambda front doors, from committed event fixtures: an API Gateway HTTP API
//! (mutual TLS) event with `clientCertPem`, and an ALB passthrough event with `X-Amzn-Mtls-Clientcert`, each
//! converted by lambda_http exactly as the runtime does and served by the device router. A certificate source
//! that is not declared is never honoured.

use std::sync::Arc;

use dps_api::ClientCertificateSource;
use dps_attestation::testing::{self, KeyKind, TestCert};
use dps_core::memory::MemoryStore;
use dps_core::model::EnrollmentGroup;
use dps_core::testing::hub;
use dps_core::{Dps, Settings};
use http_body_util::BodyExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use tower::ServiceExt;

/// What ALBs leave unescaped in the header: `+`, `=`, `/` (and the unreserved characters).
const ALB_SAFE: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'+').remove(b'=').remove(b'/').remove(b'-').remove(b'.').remove(b'_');

struct World {
    dps: Dps,
    scope: String,
    root: TestCert,
    inter: TestCert,
}

async fn world() -> World {
    let dps = Dps::new(Arc::new(MemoryStore::new()), Settings::default());
    let instance = dps_core::testing::instance(&dps, "lambda", "svc.example.com", vec![hub("hub.example.net")]).await;
    let caller = dps_core::testing::owner(&dps, &instance).await;
    let root = testing::root("lambda-root", KeyKind::Rsa2048(0));
    let inter = root.intermediate("lambda-inter", KeyKind::EcdsaP256);
    let group: EnrollmentGroup = serde_json::from_value(json!({ "enrollmentGroupId": "fleet", "attestation": {
        "type": "x509", "x509": { "signingCertificates": { "primary": { "certificate": root.pem } } } } }))
    .unwrap();
    dps.put_enrollment(&caller, "fleet", group, None).await.unwrap();
    World { dps, scope: instance.id_scope, root, inter }
}

fn event(fixture: &str, scope: &str, id: &str, pem: &str) -> String {
    let header = utf8_percent_encode(pem, ALB_SAFE).to_string();
    std::fs::read_to_string(format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replace("{SCOPE}", scope)
        .replace("{ID}", id)
        .replace("{PEM}", &pem.replace('\n', "\\n"))
        .replace("{HEADER}", &header)
}

async fn serve(w: &World, source: ClientCertificateSource, event: &str) -> (u16, Value) {
    let request = lambda_http::request::from_str(event).expect("a valid Lambda event");
    let router = dps_lambda::certs::with_client_certificates(dps_api::device_router(w.dps.clone()), source);
    let response = router.oneshot(request.map(axum::body::Body::new)).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn api_gateway_mutual_tls_event_provisions_a_chain() {
    let w = world().await;
    let leaf = w.inter.device("gw-dev-1", KeyKind::EcdsaP256);
    let chain = format!("{}{}", leaf.pem, w.inter.pem);
    let (status, body) =
        serve(&w, ClientCertificateSource::ApiGateway, &event("apigw-v2-register.json", &w.scope, "gw-dev-1", &chain))
            .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "assigned", "{body}");
    assert_eq!(body["registrationState"]["x509"]["enrollmentGroupId"], "fleet");
    assert!(
        body["registrationState"]["x509"]["signingCertificateInfo"]["subjectName"]
            .as_str()
            .unwrap()
            .contains("lambda-root")
    );
    // The same event where the deployment declares no certificate source: the certificate is not seen.
    let (status, body) =
        serve(&w, ClientCertificateSource::None, &event("apigw-v2-register.json", &w.scope, "gw-dev-2", &chain)).await;
    assert_eq!(status, 401, "{body}");
    let _ = &w.root;
}

#[tokio::test]
async fn alb_passthrough_header_provisions_only_where_declared() {
    let w = world().await;
    let leaf = w.inter.device("alb-dev-1", KeyKind::Rsa2048(1));
    let chain = format!("{}{}", leaf.pem, w.inter.pem);
    let (status, body) =
        serve(&w, ClientCertificateSource::Alb, &event("alb-register.json", &w.scope, "alb-dev-1", &chain)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["status"], "assigned", "{body}");

    // Sent straight to a deployment that does not declare an ALB (a function URL, API Gateway): ignored.
    for source in [ClientCertificateSource::None, ClientCertificateSource::ApiGateway] {
        let (status, body) = serve(&w, source, &event("alb-register.json", &w.scope, "alb-dev-2", &chain)).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["message"], "Missing Authorization header", "{body}");
    }
    // Malformed and oversized headers are refused with the reason.
    let (status, body) = serve(
        &w,
        ClientCertificateSource::Alb,
        &event("alb-register.json", &w.scope, "alb-dev-3", "not a certificate"),
    )
    .await;
    assert_eq!(status, 401);
    assert!(body["message"].as_str().unwrap().starts_with("Invalid certificate"), "{body}");
    let huge = chain.repeat(40);
    let (status, body) =
        serve(&w, ClientCertificateSource::Alb, &event("alb-register.json", &w.scope, "alb-dev-3", &huge)).await;
    assert_eq!(status, 401);
    assert!(body["message"].as_str().is_some_and(|m| m.contains("too large")), "{body}");
}
