//! Lifecycle events from the `dps` binary: the JSONL file and the webhook both get every change, in order,
//! with nothing lost at a graceful shutdown and nothing secret in them.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use dps_loadgen::client::Endpoint;
use dps_loadgen::setup::{Attestation, Service, enroll, link_hub};
use serde_json::{Value, json};
use support::Server;

mod support;

/// A webhook on loopback that keeps every event posted to it.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = got.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: String| {
            kept.lock().unwrap().push(serde_json::from_str::<Value>(&body).unwrap());
            async { axum::http::StatusCode::NO_CONTENT }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_change_reaches_the_file_and_the_webhook_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.jsonl");
    let (hook, posted) = webhook().await;
    let file_arg = file.display().to_string();
    let extra = ["--events-file", file_arg.as_str(), "--events-webhook", hook.as_str()];
    let mut server = Server::start(&dir.path().join("data"), &extra);
    let started = server.info.clone();
    let endpoint = Endpoint::new(
        started["deviceUrl"].as_str().unwrap(),
        Some(Path::new(started["caCertificate"].as_str().unwrap())),
    )
    .await
    .unwrap();
    let scope = started["idScope"].as_str().unwrap();
    let service = Service::new(endpoint.clone(), started["connectionString"].as_str().unwrap()).unwrap();
    link_hub(&service, "hub-1.example.net").await.unwrap();
    let devices = enroll(&service, scope, "ev", 3, Attestation::Individual, 1).await.unwrap();
    let key = dps_core::sas::generate_key();
    let mut conn = service.connect().await.unwrap();
    let body = json!({"registrationId": "known", "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": key}}});
    service.call(&mut conn, "PUT", "/enrollments/known", Some(&body), 200).await.unwrap();
    let mut device_conn = endpoint.connect().await.unwrap();
    let d = &devices[0];
    let path = format!("/{scope}/registrations/{}/register?api-version=2021-06-01", d.id);
    let answer = device_conn
        .call(
            "PUT",
            endpoint.host(),
            &path,
            &[("authorization", d.authorization.as_str())],
            Some(&json!({"registrationId": d.id})),
        )
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    service.call(&mut conn, "DELETE", &format!("/registrations/{}", d.id), None, 204).await.unwrap();
    service.call(&mut conn, "DELETE", "/enrollments/known", None, 204).await.unwrap();

    // A graceful stop delivers what is queued before the process ends.
    assert!(server.stop().success());

    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let told: Vec<(String, String)> = lines
        .iter()
        .map(|e| (e["type"].as_str().unwrap().to_string(), e["subject"].as_str().unwrap().to_string()))
        .collect();
    let mut created: Vec<String> = told[..3].iter().map(|(t, s)| format!("{t} {s}")).collect();
    created.sort();
    assert_eq!(
        created,
        [
            "dps.enrollment.created enrollments/ev-dev-0",
            "dps.enrollment.created enrollments/ev-dev-1",
            "dps.enrollment.created enrollments/ev-dev-2"
        ]
    );
    let rest: Vec<String> = told[3..].iter().map(|(t, s)| format!("{t} {s}")).collect();
    assert_eq!(
        rest,
        [
            "dps.enrollment.created enrollments/known".to_string(),
            format!("dps.registration.assigned registrations/{}", d.id),
            format!("dps.registration.deleted registrations/{}", d.id),
            "dps.enrollment.deleted enrollments/known".to_string(),
        ]
    );
    assert_eq!(lines[4]["data"]["assignedHub"], "hub-1.example.net");
    assert_eq!(lines[4]["idscope"], scope);
    assert!(!text.contains(&key), "an event carries a key");
    let posted = posted.lock().unwrap().clone();
    assert_eq!(posted, lines, "the webhook got the same events, in the same order");
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/events.schema.json");
    dps_test_support::assert_valid_json(&schema, &text.lines().map(str::to_string).collect::<Vec<_>>());
}

#[test]
fn an_events_file_that_cannot_be_opened_stops_the_start_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--events-file", "/nonexistent-dir/events.jsonl"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open events file /nonexistent-dir/events.jsonl"), "{err}");
}
