//! The HTTP registry connector against the example receiver (examples/hub-registry/receiver.py, which checks
//! signatures, timestamps and nonces in its own code) and against a recording server for faults.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dps_core::hubs::{HubConnector, HubDevice, HubFailureKind, HubTarget, HubTwin};
use dps_core::model::AttestationType;
use dps_hubs::http::signing;
use dps_hubs::{HttpRegistryConnector, Limits};
use serde_json::{Map, Value, json};
use support::server::{reply, serve};

const SECRET: &str = "an-example-signing-secret-of-40-chars-xx";

struct Receiver {
    url: String,
    child: Child,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn receiver() -> Receiver {
    let script = format!("{}/../../examples/hub-registry/receiver.py", env!("CARGO_MANIFEST_DIR"));
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("python3")
        .arg(&script)
        .args(["--port", &port.to_string()])
        .env("DPS_REGISTRY_SECRET", SECRET)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 runs the example receiver (the HTTP registry tests need it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the example receiver did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Receiver { url: format!("http://127.0.0.1:{port}/registry"), child }
}

fn quick() -> Limits {
    support::quick_limits(Duration::from_secs(1))
}

fn settings(url: &str) -> Map<String, Value> {
    json!({ "url": url }).as_object().unwrap().clone()
}

fn device() -> HubDevice {
    HubDevice {
        device_id: "dev 1/α".into(),
        registration_id: "dev 1/α".into(),
        attestation: AttestationType::X509,
        symmetric_keys: None,
        certificate: Some(b"leaf DER".to_vec()),
        ca_signed: false,
        iot_edge: true,
    }
}

#[tokio::test]
async fn provisions_into_the_example_receiver() {
    let receiver = receiver();
    let connector = HttpRegistryConnector::with_limits(quick()).allowing_private_targets();
    let settings = settings(&receiver.url);
    let hub = HubTarget { host_name: "registry.example", settings: &settings, credentials: Some(SECRET) };
    let device = device();
    connector.upsert_device(hub, &device).await.unwrap();
    connector.upsert_device(hub, &device).await.unwrap();
    let twin = HubTwin::from_initial_twin(&json!({ "tags": { "site": "a" }, "properties": { "desired": { "x": 1 } } }));
    connector.apply_twin(hub, &device.device_id, &twin).await.unwrap();
    assert_eq!(connector.read_twin(hub, &device.device_id).await.unwrap(), Some(twin.clone()));
    connector.remove_device(hub, &device.device_id).await.unwrap();
    connector.remove_device(hub, &device.device_id).await.unwrap();
    assert_eq!(connector.read_twin(hub, &device.device_id).await.unwrap(), None);
    let failure = connector.apply_twin(hub, &device.device_id, &twin).await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Refused);

    let wrong = "another-signing-secret-also-long-enough-xx";
    let hub = HubTarget { credentials: Some(wrong), ..hub };
    let failure = connector.upsert_device(hub, &device).await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Refused);
    // The device's record learns the status; the registry's own words ("bad signature") go to the operator's log.
    assert!(failure.message.contains("401") && !failure.message.contains("bad signature"), "{}", failure.message);
    assert!(!failure.message.contains(wrong) && !failure.message.contains(SECRET));
}

#[tokio::test]
async fn the_receiver_refuses_replays_old_timestamps_and_tampering() {
    // Capture one signed request as the connector sends it, then play it to the receiver.
    let capture = serve(|_| Box::pin(async { reply(200, Some(json!({})), &[]) })).await;
    let settings = settings(&format!("{}/registry", capture.url));
    let hub = HubTarget { host_name: "registry.example", settings: &settings, credentials: Some(SECRET) };
    HttpRegistryConnector::with_limits(quick()).allowing_private_targets().upsert_device(hub, &device()).await.unwrap();
    let sent = capture.requests().remove(0);
    assert_eq!(sent.path, "/registry/devices/dev%201%2F%CE%B1");
    let body: Value = sent.json().unwrap();
    assert_eq!(body["x509"]["thumbprint"].as_str().unwrap().len(), 64);
    assert_eq!((body["attestation"].as_str(), body["iotEdge"].as_bool()), (Some("x509"), Some(true)));

    let receiver = receiver();
    let base = receiver.url.trim_end_matches("/registry").to_owned();
    let client = reqwest::Client::new();
    let play = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        let mut request = client.put(format!("{base}{}", sent.path)).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let header = |name: &str| sent.header(name).unwrap().to_owned();
    let as_sent = vec![
        (signing::TIMESTAMP_HEADER, header(signing::TIMESTAMP_HEADER)),
        (signing::NONCE_HEADER, header(signing::NONCE_HEADER)),
        (signing::SIGNATURE_HEADER, header(signing::SIGNATURE_HEADER)),
    ];
    assert_eq!(play(as_sent.clone(), sent.body.clone()).await.0, 200, "the signature verifies in Python");
    let (status, text) = play(as_sent.clone(), sent.body.clone()).await;
    assert_eq!((status, text.contains("replayed")), (401, true), "{text}");

    let mut tampered = sent.body.clone();
    tampered[2] ^= 1;
    let mut fresh_nonce = as_sent.clone();
    fresh_nonce[1].1 = "another-nonce".into();
    assert_eq!(play(fresh_nonce, tampered).await.0, 401, "a changed body");

    let old = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() - signing::REPLAY_WINDOW_SECS - 60;
    let signature = signing::signature(SECRET, "PUT", &sent.path, old, "old-nonce", &sent.body);
    let (status, text) = play(
        vec![
            (signing::TIMESTAMP_HEADER, old.to_string()),
            (signing::NONCE_HEADER, "old-nonce".into()),
            (signing::SIGNATURE_HEADER, signature),
        ],
        sent.body.clone(),
    )
    .await;
    assert_eq!((status, text.contains("window")), (401, true), "{text}");
}

#[tokio::test]
async fn server_errors_are_retried_and_throttling_reported() {
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let server = serve(move |request| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            match (request.path.as_str(), n) {
                (_, 0) => reply(503, None, &[]),
                ("/devices/a", _) => reply(204, None, &[]),
                _ => reply(429, None, &[("Retry-After", "0")]),
            }
        })
    })
    .await;
    let settings = settings(&server.url);
    let hub = HubTarget { host_name: "registry.example", settings: &settings, credentials: Some(SECRET) };
    let connector = HttpRegistryConnector::with_limits(quick()).allowing_private_targets();
    connector.upsert_device(hub, &HubDevice { device_id: "a".into(), ..device() }).await.unwrap();
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2, "503, then 204");
    let failure = connector.read_twin(hub, "b").await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Throttled, "{failure:?}");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 5, "three attempts");
}

#[test]
fn settings_and_secrets_are_checked_when_linking() {
    let connector = HttpRegistryConnector::new();
    let ok = |url: &str| connector.check_settings(&settings(url), Some(SECRET));
    assert_eq!(ok("https://registry.example/dps"), Ok(()));
    // A tenant's registry URL may not point into the deployment's own network, unless the deployment allows it.
    for private in
        ["http://127.0.0.1:8080", "https://10.0.0.7/dps", "https://[::ffff:169.254.169.254]/", "https://[fd00::1]/"]
    {
        assert!(ok(private).unwrap_err().contains("private, loopback or link-local"), "{private}");
    }
    let trusting = HttpRegistryConnector::new().allowing_private_targets();
    assert_eq!(trusting.check_settings(&settings("http://127.0.0.1:8080"), Some(SECRET)), Ok(()));
    for (url, expected) in [
        ("http://registry.example", "https"),
        ("ftp://registry.example", "https"),
        ("https://user:pw@registry.example", "user name"),
        ("https://registry.example/?a=1", "query"),
        ("not a url", "not a URL"),
    ] {
        let err = ok(url).unwrap_err();
        assert!(err.contains(expected), "{url}: {err}");
    }
    assert!(connector.check_settings(&Map::new(), Some(SECRET)).unwrap_err().contains("url"));
    let err = connector.check_settings(&settings("https://r.example"), Some("short")).unwrap_err();
    assert!(err.contains("32") && !err.contains("short"), "{err}");
    let mut extra = settings("https://r.example");
    extra.insert("token".into(), json!("x"));
    assert!(connector.check_settings(&extra, Some(SECRET)).is_err());
}

#[tokio::test]
async fn a_registry_name_that_resolves_to_loopback_is_refused_without_its_address() {
    let server = serve(|_| Box::pin(async { reply(204, None, &[]) })).await;
    let port = server.url.rsplit(':').next().unwrap().to_string();
    // `localhost` passes the literal check (it is a name); the resolver refuses it on the address it resolves to.
    let settings = settings(&format!("http://localhost:{port}"));
    let hub = HubTarget { host_name: "registry.example", settings: &settings, credentials: Some(SECRET) };
    let failure = HttpRegistryConnector::with_limits(quick()).upsert_device(hub, &device()).await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::NotConfigured, "{failure:?}");
    assert!(failure.message.contains("not allowed"), "{}", failure.message);
    assert!(!failure.message.contains("127.0.0.1") && !failure.message.contains("::1"), "{}", failure.message);
    assert!(server.requests().is_empty(), "nothing reached the registry");
    // The same registry, in a deployment that allows private targets, is written.
    HttpRegistryConnector::with_limits(quick()).allowing_private_targets().upsert_device(hub, &device()).await.unwrap();
    assert_eq!(server.requests().len(), 1);
}
