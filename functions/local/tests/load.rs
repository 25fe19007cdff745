//! Load against the `dps` binary: the load generator provisions a few devices in each of its modes (symmetric keys
//! and X.509 certificates), and a kill -9
//! in the middle of a burst of first-time registrations loses no registration a device was told is `assigned`,
//! with the operation counters agreeing with the records after the restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use dps_loadgen::setup::{Attestation, Service, enroll, link_hub};
use dps_loadgen::{Options, emit, run};
use serde_json::Value;

/// Longest the test waits for the burst to get going.
const BOUND: Duration = Duration::from_secs(60);

mod support;
use support::Server;

/// The load generator's view of the server.
trait Served {
    fn url(&self) -> String;
    async fn service(&self) -> Service;
}

impl Served for Server {
    fn url(&self) -> String {
        format!("https://{}", self.field("listen"))
    }

    async fn service(&self) -> Service {
        Service::new(self.endpoint().await, &self.field("connectionString")).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_provisions_devices_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let report_file = dir.path().join("report.json");
    let pid = server.child.id().to_string();
    let base = [
        "dps-loadgen",
        "--url",
        &server.url(),
        "--ca",
        &server.field("caCertificate"),
        "--connection-string",
        &server.field("connectionString"),
        "--scope",
        &server.field("idScope"),
        "--server-pid",
        &pid,
    ];
    let with = |extra: &[&str]| Options::parse_from(base.iter().chain(extra));
    let cases = [
        with(&["-n", "20", "-c", "4", "--run-id", "smoke-first", "--json", report_file.to_str().unwrap()]),
        with(&["-n", "6", "-c", "2", "--mode", "reregister", "--connect", "fresh"]),
        with(&["-n", "6", "-c", "2", "--mode", "poll"]),
        with(&["-n", "12", "-c", "3", "--attestation", "individual"]),
    ];
    for options in &cases {
        let report = run(options).await.unwrap_or_else(|e| panic!("{options:?}: {e:#}"));
        emit(options, &report).unwrap();
        assert_eq!(report.succeeded, options.devices, "{report}");
        assert!(report.errors.is_empty(), "{report}");
        assert!(report.server_cpu_us_per_op.is_some(), "server CPU measured: {report}");
    }

    let written: Value = serde_json::from_slice(&std::fs::read(&report_file).unwrap()).unwrap();
    assert_eq!(written["mode"], "first");
    assert_eq!(written["succeeded"], 20);
    assert!(written["latencyMs"]["p99"].as_f64().unwrap() > 0.0, "{written}");
    // The devices are there for the operator to see.
    let service = server.service().await;
    let mut conn = service.connect().await.unwrap();
    let record = service.call(&mut conn, "GET", "/registrations/smoke-first-dev-19", None, 200).await.unwrap();
    assert_eq!(record["status"], "assigned");
    assert_eq!(record["assignedHub"], "loadgen-hub.example.net");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_generator_provisions_x509_devices_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    // The operator's own CA, for --signing-cert.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CountryName, rcgen::DnValue::PrintableString("NL".try_into().unwrap()));
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "Contoso fleet");
    params.distinguished_name.push(rcgen::DnType::CommonName, "Contoso devices CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_cert = params.self_signed(&ca_key).unwrap();
    let (ca_pem, ca_key_pem) = (dir.path().join("fleet-ca.pem"), dir.path().join("fleet-ca-key.pem"));
    std::fs::write(&ca_pem, ca_cert.pem()).unwrap();
    std::fs::write(&ca_key_pem, ca_key.serialize_pem()).unwrap();

    let base = [
        "dps-loadgen".to_string(),
        "--url".into(),
        server.url(),
        "--ca".into(),
        server.field("caCertificate"),
        "--connection-string".into(),
        server.field("connectionString"),
        "--scope".into(),
        server.field("idScope"),
    ];
    let with = |extra: &[&str]| Options::parse_from(base.iter().map(String::as_str).chain(extra.iter().copied()));
    let (ca, key) = (ca_pem.to_str().unwrap(), ca_key_pem.to_str().unwrap());
    let cases = [
        with(&["-n", "8", "-c", "4", "--attestation", "x509-group", "--run-id", "x509-p256"]),
        with(&["-n", "4", "-c", "2", "--attestation", "x509-group", "--key-type", "rsa2048", "--run-id", "x509-rsa"]),
        with(&["-n", "4", "-c", "2", "--attestation", "x509-individual", "--mode", "reregister"]),
        with(&["-n", "4", "-c", "2", "--attestation", "x509-group", "--mode", "poll"]),
        with(&["-n", "4", "-c", "2", "--attestation", "x509-group", "--signing-cert", ca, "--signing-key", key]),
    ];
    for options in &cases {
        let report = run(options).await.unwrap_or_else(|e| panic!("{options:?}: {e:#}"));
        emit(options, &report).unwrap();
        assert_eq!(report.succeeded, options.devices, "{report}");
        assert!(report.errors.is_empty(), "{report}");
        assert_eq!(report.connection, "fresh", "{report}");
    }

    // The server recorded them as devices of their certificate groups.
    let service = server.service().await;
    let mut conn = service.connect().await.unwrap();
    for (group, count) in [("x509-p256", 8), ("x509-rsa", 4)] {
        let path = format!("/registrations/{group}/query");
        let records = service.call(&mut conn, "POST", &path, None, 200).await.unwrap();
        let records = records.as_array().expect("an array");
        assert_eq!(records.len(), count, "{records:?}");
        assert!(records.iter().all(|r| r["status"] == "assigned"), "{records:?}");
    }

    // A certificate cannot be kept alive across devices: a clear error, before anything is created.
    let keep_alive = with(&["-n", "2", "--attestation", "x509-group", "--connect", "keep-alive", "--run-id", "ka"]);
    let error = run(&keep_alive).await.expect_err("keep-alive with X.509 is refused");
    assert!(format!("{error:#}").contains("--connect fresh"), "{error:#}");
    service.call(&mut conn, "GET", "/enrollmentGroups/ka", None, 404).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_in_the_middle_of_a_burst_loses_no_answered_registration() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]);
    let service = server.service().await;
    link_hub(&service, "hub-1.example.net").await.unwrap();
    let scope = server.field("idScope");
    let fleet = Arc::new(enroll(&service, &scope, "burst", 4000, Attestation::Group, 1).await.unwrap());

    // 16 devices in flight on keep-alive connections; each device is recorded once it is told `assigned`.
    let endpoint = server.endpoint().await;
    let assigned = Arc::new(Mutex::new(Vec::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (endpoint, fleet, assigned, next, scope) =
            (endpoint.clone(), fleet.clone(), assigned.clone(), next.clone(), scope.clone());
        workers.spawn(async move {
            let Ok(mut conn) = endpoint.connect().await else { return };
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(device) = fleet.get(i) else { return };
                let path = format!("/{scope}/registrations/{}/register?api-version=2021-06-01", device.id);
                let auth = [("authorization", device.authorization.as_str())];
                let body = serde_json::json!({"registrationId": device.id});
                match conn.call("PUT", endpoint.host(), &path, &auth, Some(&body)).await {
                    Ok(answer) if answer.status == 202 && answer.body["status"] == "assigned" => {
                        assigned.lock().unwrap().push(device.id.clone());
                    }
                    Ok(answer) => panic!("{}: HTTP {} {}", device.id, answer.status, answer.body),
                    // The server is gone.
                    Err(_) => return,
                }
            }
        });
    }
    let started = Instant::now();
    while assigned.lock().unwrap().len() < 300 {
        assert!(started.elapsed() < BOUND, "the burst did not get going");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.child.kill().unwrap(); // SIGKILL: no shutdown, no flush
    server.child.wait().unwrap();
    while let Some(done) = workers.join_next().await {
        done.expect("every answer before the kill was an assignment");
    }
    let assigned = assigned.lock().unwrap().clone();
    assert!(assigned.len() < fleet.len(), "the kill came in the middle of the burst");

    let server = Server::start(dir.path(), &[]);
    let service = server.service().await;
    let mut conn = service.connect().await.unwrap();
    for id in &assigned {
        let record = service.call(&mut conn, "GET", &format!("/registrations/{id}"), None, 200).await;
        let record = record.unwrap_or_else(|e| panic!("{id} was told assigned, but after the restart: {e:#}"));
        assert_eq!(record["status"], "assigned", "{id}");
    }
    let mut records = 0;
    let mut continuation: Option<String> = None;
    loop {
        let mut headers = vec![("x-ms-max-item-count", "1000")];
        if let Some(token) = &continuation {
            headers.push(("x-ms-continuation", token.as_str()));
        }
        let page = service.answer(&mut conn, "POST", "/registrations/burst/query", &headers, None, 200).await.unwrap();
        records += page.body.as_array().expect("a page is an array").len();
        continuation = page.headers.get("x-ms-continuation").map(|v| v.to_str().unwrap().to_string());
        if continuation.is_none() {
            break;
        }
    }
    let today = time::OffsetDateTime::now_utc().date();
    let days = format!("/config/operations?from={}&to={today}", today - time::Duration::days(1));
    let counts = service.call(&mut conn, "GET", &days, None, 200).await.unwrap();
    let counted: u64 = counts
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "registration")
        .map(|c| c["count"].as_u64().unwrap())
        .sum();
    assert!(records >= assigned.len(), "{records} records for {} answered devices", assigned.len());
    assert_eq!(counted, records as u64, "one registration counted per stored record");
}
