//! The client commands (`dps enrollment ...`, `dps import`, `dps export`, ...) end to end: the real `dps`
//! binary as a client of a real `dps serve` on an ephemeral port, found through the data dir; and, for the
//! 429 storm, of a small stand-in service on 127.0.0.1 (the server has no service API rate limit to provoke).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
mod support;
use support::{Server, dps};

/// A server over a fresh data directory: the temporary directory (which holds `data`), `data`, the server.
fn served() -> (tempfile::TempDir, PathBuf, Server) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    (dir, data, server)
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited")
}

fn json_of(data_dir: &Path, args: &[&str]) -> Value {
    let out = dps(data_dir, args);
    assert_eq!(code(&out), 0, "dps {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("dps {args:?} printed no JSON ({e})"))
}

const KEY: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTEyMzQ=";

#[test]
fn enrollments_groups_and_hubs_through_the_cli_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = Server::start(data, &[]);

    let created =
        json_of(data, &["enrollment", "create", "dev-1", "--key", KEY, "--tags", r#"{"site":"p2"}"#, "--json"]);
    assert_eq!(created["registrationId"], "dev-1");
    assert_eq!(created["initialTwin"]["tags"]["site"], "p2");
    assert_eq!(created["attestation"]["symmetricKey"], json!({}), "keys are not printed unless asked");
    let again = dps(data, &["enrollment", "create", "dev-1", "--key", KEY]);
    assert_eq!(code(&again), 3, "exists already: {}", String::from_utf8_lossy(&again.stderr));
    assert!(String::from_utf8_lossy(&again.stderr).contains("update"), "the error says what to do");

    let shown = json_of(data, &["enrollment", "show", "dev-1", "--show-keys", "--json"]);
    assert_eq!(shown["attestation"]["symmetricKey"]["primaryKey"], KEY);
    let table = dps(data, &["enrollment", "show", "dev-1"]);
    assert!(!String::from_utf8_lossy(&table.stdout).contains(KEY), "no key without --show-keys");

    let updated = json_of(data, &["enrollment", "update", "dev-1", "--device-id", "pump-7", "--json"]);
    assert_eq!(updated["deviceId"], "pump-7");
    assert_eq!(updated["initialTwin"]["tags"]["site"], "p2", "update keeps what it was not told to change");
    json_of(data, &["enrollment", "disable", "dev-1", "--json"]);
    let listed = json_of(data, &["enrollment", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["provisioningStatus"], "disabled");
    let shown = json_of(data, &["enrollment", "show", "dev-1", "--show-keys", "--json"]);
    assert_eq!(shown["attestation"]["symmetricKey"]["primaryKey"], KEY, "updates keep the keys");
    json_of(data, &["enrollment", "enable", "dev-1", "--json"]);

    // Groups, derive-key against the service, and records.
    json_of(data, &["group", "create", "line-2", "--key", KEY, "--prefix", "line2-", "--json"]);
    let derived = json_of(data, &["derive-key", "--group", "line-2", "line2-a", "--json"]);
    assert_eq!(derived[0]["key"], dps_core::sas::derive_device_key(KEY, "line2-a").unwrap());
    let records = json_of(data, &["registration", "list", "--group", "line-2", "--json"]);
    assert_eq!(records, json!([]));
    assert_eq!(code(&dps(data, &["registration", "show", "line2-a"])), 2);

    // Hubs go through the service API while the server runs (the data dir is held).
    json_of(data, &["hub", "link", "--host", "hub-1.example.net", "--weight", "5", "--json"]);
    let hubs = json_of(data, &["hub", "list", "--json"]);
    assert_eq!(hubs[0]["hostName"], "hub-1.example.net");
    assert_eq!(hubs[0]["allocationWeight"], 5);
    json_of(data, &["hub", "unlink", "--host", "hub-1.example.net", "--json"]);
    assert_eq!(code(&dps(data, &["hub", "unlink", "--host", "hub-1.example.net"])), 2);

    // Exit codes: not found, usage, auth, unreachable.
    json_of(data, &["enrollment", "delete", "dev-1", "--json"]);
    assert_eq!(code(&dps(data, &["enrollment", "show", "dev-1"])), 2);
    assert_eq!(code(&dps(data, &["enrollment", "frobnicate"])), 1);
    assert_eq!(code(&dps(data, &["enrollment", "create", "bad id!"])), 1);
    let url = server.info["deviceUrl"].as_str().unwrap();
    let ca = server.info["caCertificate"].as_str().unwrap();
    let forged =
        "HostName=localhost;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=AAAAAAAAAAAAAAAAAAAAAA==";
    let refused = dps(data, &["enrollment", "list", "--connection-string", forged, "--endpoint", url, "--ca-file", ca]);
    assert_eq!(code(&refused), 4, "{}", String::from_utf8_lossy(&refused.stderr));
    let good = server.info["connectionString"].as_str().unwrap();
    let explicit = dps(data, &["enrollment", "list", "--connection-string", good, "--endpoint", url, "--ca-file", ca]);
    assert_eq!(code(&explicit), 0, "an explicit connection string and endpoint reach the same server");
    let untrusted = dps(data, &["enrollment", "list", "--connection-string", good, "--endpoint", url]);
    assert_eq!(code(&untrusted), 6, "the local CA is not trusted without --ca-file");
    drop(server);
    let gone = dps(data, &["enrollment", "list"]);
    assert_eq!(code(&gone), 1, "no server: says how to name one");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("--connection-string"));
}

#[test]
fn profiles_name_a_deployment() {
    let (dir, _, server) = served();
    let profiles = dir.path().join("profiles.toml");
    let text = format!(
        "[profiles.plant]\nconnection-string = \"{}\"\nendpoint = \"{}\"\nca-file = \"{}\"\n",
        server.info["connectionString"].as_str().unwrap(),
        server.info["deviceUrl"].as_str().unwrap(),
        server.info["caCertificate"].as_str().unwrap()
    );
    std::fs::write(&profiles, text).unwrap();
    let other = dir.path().join("elsewhere");
    let out = Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(["group", "list", "--json", "--profile", "plant", "--data-dir"])
        .arg(&other)
        .env("DPS_PROFILES", &profiles)
        .env_remove("DPS_CONNECTION_STRING")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!([]));
    let out = Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(["group", "list", "--profile", "nope"])
        .env("DPS_PROFILES", &profiles)
        .output()
        .unwrap();
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("plant"), "names the profiles there are");
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/fixtures").join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn policies_with_readable_dry_runs_and_ca_certificates() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let (dir, data, _server) = served();
    let module = dir.path().join("flood.wasm");
    std::fs::write(&module, fixture("log-flood")).unwrap();
    let info = json_of(&data, &["policy", "upload", "flood", module.to_str().unwrap(), "--json"]);
    assert_eq!(info["name"], "flood");
    let listed = json_of(&data, &["policy", "list", "--json"]);
    assert_eq!(listed[0]["sha256"], info["sha256"]);
    let out = dps(&data, &["policy", "dry-run", "flood", "--registration-id", "dev-1", "--hub", "hub-a.example.net"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let shown = text(&out);
    assert!(shown.contains("decision:   assigned to hub-a.example.net"), "{shown}");
    assert!(shown.contains("fuel:") && shown.contains(" of ") && shown.contains("log:"), "{shown}");
    assert!(shown.contains("| log line that is exactly sixty-four bytes long"), "{shown}");
    assert!(shown.contains("(truncated)"), "the host's log bound shows: {shown}");
    let trap = dir.path().join("trap.wasm");
    std::fs::write(&trap, fixture("trap")).unwrap();
    json_of(&data, &["policy", "upload", "trap", trap.to_str().unwrap(), "--json"]);
    let failed = text(&dps(&data, &["policy", "dry-run", "trap", "--hub", "hub-a.example.net"]));
    assert!(failed.starts_with("decision:   failed, errorCode 4002"), "{failed}");
    json_of(&data, &["policy", "delete", "flood", "--json"]);
    assert_eq!(code(&dps(&data, &["policy", "show", "flood"])), 2);
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, b"not wasm").unwrap();
    assert_eq!(code(&dps(&data, &["policy", "upload", "bad", bad.to_str().unwrap()])), 1);

    // A CA certificate: upload, verify with a certificate whose CN is the code, reference it from a group.
    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name.push(DnType::CommonName, "fleet CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    let up = json_of(&data, &["ca", "upload", "fleet", ca_file.to_str().unwrap(), "--json"]);
    assert_eq!(up["isVerified"], false);
    let verification_code = up["verificationCode"].as_str().unwrap();
    let mut proof = CertificateParams::default();
    proof.distinguished_name.push(DnType::CommonName, verification_code);
    let proof_key = KeyPair::generate().unwrap();
    let proof = proof.signed_by(&proof_key, &Issuer::new(ca_params, ca_key)).unwrap();
    let proof_file = dir.path().join("proof.pem");
    std::fs::write(&proof_file, proof.pem()).unwrap();
    assert_eq!(code(&dps(&data, &["ca", "verify", "fleet", ca_file.to_str().unwrap()])), 1, "not the proof");
    let verified = json_of(&data, &["ca", "verify", "fleet", proof_file.to_str().unwrap(), "--json"]);
    assert_eq!(verified["isVerified"], true);
    let table = text(&dps(&data, &["ca", "list"]));
    assert!(table.starts_with("NAME") && table.contains("fleet") && table.contains("true"), "{table}");
    json_of(&data, &["group", "create", "fleet-devices", "--ca", "fleet", "--json"]);
    assert_eq!(code(&dps(&data, &["ca", "delete", "fleet"])), 3, "still referenced by a group");
    json_of(&data, &["group", "delete", "fleet-devices", "--json"]);
    json_of(&data, &["ca", "delete", "fleet", "--json"]);

    // X.509 from PEM files: a group with the CA as its signing certificate, an enrollment with a device's own
    // certificate; both read back as x509 with the certificates' info, as Azure shows them.
    let group = json_of(&data, &["group", "create", "signed-devices", "--cert", ca_file.to_str().unwrap(), "--json"]);
    assert_eq!(group["attestation"]["type"], "x509", "{group}");
    let signing = &group["attestation"]["x509"]["signingCertificates"]["primary"]["info"];
    assert!(signing["subjectName"].as_str().unwrap().contains("fleet CA"), "{group}");
    let device_file = dir.path().join("device.pem");
    std::fs::write(&device_file, device_pem()).unwrap();
    let enrolled =
        json_of(&data, &["enrollment", "create", "x509-device", "--cert", device_file.to_str().unwrap(), "--json"]);
    assert_eq!(enrolled["attestation"]["type"], "x509", "{enrolled}");
    let client = &enrolled["attestation"]["x509"]["clientCertificates"]["primary"]["info"];
    assert!(client["subjectName"].as_str().unwrap().contains("x509-device"), "{enrolled}");
    assert_eq!(client["sha256Thumbprint"].as_str().unwrap().len(), 64, "{enrolled}");
    let missing = dir.path().join("missing.pem");
    assert_eq!(code(&dps(&data, &["enrollment", "create", "nobody", "--cert", missing.to_str().unwrap()])), 1);
}

/// A self-signed device certificate whose CN is `x509-device` (the enrollment's registration ID), PEM.
fn device_pem() -> String {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(rcgen::DnType::CommonName, "x509-device");
    params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap().pem()
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn import_with_a_bad_row_then_export_reads_back_the_same_and_resumes() {
    let (dir, data, _server) = served();
    let n = 3000;
    let input = dir.path().join("devices.jsonl");
    let mut file = std::fs::File::create(&input).unwrap();
    for i in 0..n {
        let mut e = json!({
            "registrationId": format!("dev-{i:05}"),
            "attestation": { "type": "symmetricKey", "symmetricKey": {} },
            "initialTwin": { "tags": { "n": i } },
        });
        if i == 1234 {
            e["attestation"]["symmetricKey"]["primaryKey"] = json!("not base64!");
        }
        writeln!(file, "{e}").unwrap();
        if i == 2000 {
            writeln!(file, "{{not json").unwrap();
        }
    }
    drop(file);

    let out = dps(&data, &["import", input.to_str().unwrap(), "--concurrency", "8", "--json"]);
    assert_eq!(code(&out), 7, "some rows failed: {}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((summary["total"].as_u64(), summary["succeeded"].as_u64()), (Some(n + 1), Some(n - 1)));
    let failed = std::fs::read_to_string(dir.path().join("devices.failed.jsonl")).unwrap();
    let failed: Vec<&str> = failed.lines().collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[0].contains("dev-01234") && failed[1] == "{not json");
    let reasons = lines(&dir.path().join("devices.failed.errors.jsonl"));
    assert_eq!(reasons[0]["id"], "dev-01234");
    assert_eq!(reasons[0]["errorCode"], 400004);
    assert_eq!(reasons[1]["line"], 2002);

    // One-shot export, compared with what was imported.
    let whole = dir.path().join("all.jsonl");
    let out = dps(&data, &["export", "enrollments", "--output", whole.to_str().unwrap(), "--page-size", "700"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let exported: BTreeMap<String, Value> =
        lines(&whole).into_iter().map(|e| (e["registrationId"].as_str().unwrap().to_string(), e)).collect();
    assert_eq!(exported.len() as u64, n - 1);
    for i in (0..n).filter(|i| *i != 1234) {
        let e = &exported[&format!("dev-{i:05}")];
        assert_eq!(e["initialTwin"]["tags"]["n"], i);
    }
    assert!(!exported.contains_key("dev-01234"));
    assert!(!dir.path().join("all.jsonl.continuation").exists(), "a whole export leaves no position behind");

    // Interrupted after two pages, then resumed: the same lines, none twice.
    let part = dir.path().join("part.jsonl");
    let p = part.to_str().unwrap();
    let out = dps(&data, &["export", "enrollments", "--output", p, "--page-size", "700", "--max-pages", "2"]);
    assert_ne!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"), "says how to continue");
    assert_eq!(lines(&part).len(), 1400);
    // A line written after the position was kept (as by a crash mid-page) is not duplicated.
    std::fs::OpenOptions::new().append(true).open(&part).unwrap().write_all(b"{\"partial\":").unwrap();
    let out = dps(&data, &["export", "enrollments", "--output", p, "--page-size", "700", "--resume"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let resumed: Vec<String> = lines(&part).iter().map(|e| e["registrationId"].as_str().unwrap().to_string()).collect();
    assert_eq!(resumed.len() as u64, n - 1);
    assert_eq!(resumed.iter().collect::<BTreeSet<_>>(), exported.keys().collect::<BTreeSet<_>>());

    // The export imports again (update mode), and with --with-keys carries the keys.
    let out = dps(&data, &["import", whole.to_str().unwrap(), "--mode", "update", "--json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let keyed = dir.path().join("keys.jsonl");
    let out = dps(&data, &["export", "enrollments", "--output", keyed.to_str().unwrap(), "--with-keys"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(lines(&keyed).iter().all(|e| e["attestation"]["symmetricKey"]["primaryKey"].is_string()));
}

#[test]
fn csv_import_refuses_unknown_columns_before_sending_anything() {
    let (dir, data, _server) = served();
    let csv = dir.path().join("g.csv");
    std::fs::write(&csv, "enrollmentGroupId,primaryKey,colour\ng1,,red\n").unwrap();
    let out = dps(&data, &["import", csv.to_str().unwrap(), "--kind", "groups"]);
    assert_eq!(code(&out), 1);
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
    std::fs::write(&csv, "enrollmentGroupId,primaryKey,registrationIdPrefix,tags\ng1,,a-,\"{\"\"k\"\":1}\"\ng2,,b-,\n")
        .unwrap();
    let out = dps(&data, &["import", csv.to_str().unwrap(), "--kind", "groups", "--json"]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let groups = json_of(&data, &["group", "list", "--json"]);
    assert_eq!(groups[0]["registrationIdPrefix"], "a-");
    assert_eq!(groups[0]["initialTwin"]["tags"]["k"], 1);
    assert_eq!(groups.as_array().unwrap().len(), 2);
}

/// What the stand-in saw: items accepted, 429s sent, and the Host headers.
#[derive(Default)]
struct Seen {
    accepted: Vec<String>,
    calls: usize,
    throttled: usize,
    hosts: BTreeSet<String>,
}

/// A stand-in bulk endpoint over plain HTTP: the first 30 calls and then every third one are answered 429 with
/// `Retry-After: 1`; the others accept every item.
async fn standin(seen: Arc<Mutex<Seen>>) -> std::net::SocketAddr {
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/enrollments",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                let mut s = seen.lock().unwrap();
                s.calls += 1;
                s.hosts.insert(headers.get("host").unwrap().to_str().unwrap().to_string());
                assert!(headers.get("authorization").unwrap().to_str().unwrap().starts_with("SharedAccessSignature "));
                if s.calls <= 30 || s.calls.is_multiple_of(3) {
                    s.throttled += 1;
                    let body = json!({"errorCode": 429001, "message": "Operations are being throttled"}).to_string();
                    return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], body).into_response();
                }
                let req: Value = serde_json::from_slice(&body).unwrap();
                for e in req["enrollments"].as_array().unwrap() {
                    s.accepted.push(e["registrationId"].as_str().unwrap().to_string());
                }
                (StatusCode::OK, json!({"isSuccessful": true, "errors": []}).to_string()).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_is_waited_out_and_every_row_arrives_once() {
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = standin(seen.clone()).await;
    let input = dir.path().join("d.csv");
    let mut text = String::from("registrationId,primaryKey\n");
    for i in 0..2000 {
        text.push_str(&format!("d-{i},{KEY}\n"));
    }
    std::fs::write(&input, text).unwrap();
    let conn = format!("HostName=dps.standin.test;SharedAccessKeyName=owner;SharedAccessKey={KEY}");
    let endpoint = format!("http://{addr}");
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(["import", input.to_str().unwrap(), "--concurrency", "16", "--json"])
        .args(["--connection-string", &conn, "--endpoint", &endpoint])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = seen.lock().unwrap();
    assert_eq!(summary["succeeded"], 2000);
    assert_eq!(summary["throttled"].as_u64().unwrap() as usize, s.throttled);
    assert!(s.throttled >= 30 + 60, "a storm, then one call in three: {}", s.throttled);
    let unique: BTreeSet<&String> = s.accepted.iter().collect();
    assert_eq!((s.accepted.len(), unique.len()), (2000, 2000), "every row once");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1), "Retry-After was waited");
    assert_eq!(s.hosts, BTreeSet::from([format!("dps.standin.test:{}", addr.port())]), "sent as the HostName");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_records_export_group_by_group_and_resume() {
    use clap::Parser as _;
    let (dir, data, server) = served();
    let field = |k: &str| server.info[k].as_str().unwrap().to_string();
    // Two groups' devices, registered through the device API by the load generator.
    for (run, n) in [("alpha", "25"), ("beta", "15")] {
        let options = dps_loadgen::Options::parse_from([
            "dps-loadgen",
            "--url",
            &field("deviceUrl"),
            "--ca",
            &field("caCertificate"),
            "--connection-string",
            &field("connectionString"),
            "--scope",
            &field("idScope"),
            "-n",
            n,
            "-c",
            "4",
            "--run-id",
            run,
        ]);
        let report = dps_loadgen::run(&options).await.unwrap();
        assert_eq!(report.succeeded.to_string(), n);
    }
    let data2 = data.clone();
    let run = move |args: Vec<String>| {
        let data = data2.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = dps(&data, &args);
            (code(&out), String::from_utf8_lossy(&out.stderr).to_string())
        }
    };
    let out = dir.path().join("records.jsonl");
    let o = out.to_str().unwrap().to_string();
    let args = |extra: &[&str]| {
        let mut a: Vec<String> =
            ["export", "registrations", "--output", &o, "--page-size", "10"].map(String::from).into();
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let (c, err) = run(args(&["--max-pages", "3"])).await;
    assert_ne!(c, 0, "{err}");
    assert_eq!(lines(&out).len(), 25, "three pages of ten within the first group's 25");
    let (c, err) = run(args(&["--resume"])).await;
    assert_eq!(c, 0, "{err}");
    let records = lines(&out);
    let ids: BTreeSet<&str> = records.iter().map(|r| r["registrationId"].as_str().unwrap()).collect();
    assert_eq!((records.len(), ids.len()), (40, 40), "both groups, every record once");
    assert!(records.iter().all(|r| r["status"] == "assigned"));
}
