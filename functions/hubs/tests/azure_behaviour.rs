//! The Azure IoT Hub connector against a registry that answers as the REST API documents, faults included.

mod support;

use std::time::{Duration, Instant};

use dps_core::hubs::{HubConnector, HubDevice, HubFailureKind, HubTarget, HubTwin};
use dps_core::model::AttestationType;
use dps_hubs::{AzureIotHubConnector, Limits};
use serde_json::{Map, json};
use support::azure_registry::{Fault, HOST, KEY, Registry, connection_string};

fn quick() -> Limits {
    support::quick_limits(Duration::from_secs(2))
}

fn device() -> HubDevice {
    HubDevice {
        device_id: "dev-1".into(),
        registration_id: "dev-1".into(),
        attestation: AttestationType::SymmetricKey,
        symmetric_keys: Some(("cHJpbWFyeQ==".into(), "c2Vjb25kYXJ5".into())),
        certificate: None,
        ca_signed: false,
        iot_edge: false,
    }
}

fn twin(value: serde_json::Value) -> HubTwin {
    HubTwin::from_initial_twin(&value)
}

struct Setup {
    registry: Registry,
    connector: AzureIotHubConnector,
    settings: Map<String, serde_json::Value>,
    credentials: String,
}

impl Setup {
    async fn new() -> Self {
        let registry = Registry::start().await;
        let connector = AzureIotHubConnector::with_limits(quick()).with_endpoint(&registry.server.url);
        Self { registry, connector, settings: Map::new(), credentials: connection_string() }
    }

    fn hub(&self) -> HubTarget<'_> {
        HubTarget { host_name: HOST, settings: &self.settings, credentials: Some(&self.credentials) }
    }
}

#[tokio::test]
async fn provisions_updates_an_existing_device_and_replaces_its_twin() {
    let s = Setup::new().await;
    s.connector.upsert_device(s.hub(), &device()).await.unwrap();
    let first =
        twin(json!({ "tags": { "site": "a", "old": 1 }, "properties": { "desired": { "x": { "y": 1, "z": 2 } } } }));
    s.connector.apply_twin(s.hub(), "dev-1", &first).await.unwrap();
    // Re-registration: the device exists (409 then update under its etag) and its twin is replaced.
    let rotated = HubDevice { symmetric_keys: Some(("bmV3".into(), "bmV3Mg==".into())), iot_edge: true, ..device() };
    s.connector.upsert_device(s.hub(), &rotated).await.unwrap();
    let second = twin(json!({ "tags": { "site": "b" }, "properties": { "desired": { "x": { "y": 1 } } } }));
    s.connector.apply_twin(s.hub(), "dev-1", &second).await.unwrap();
    assert_eq!(s.connector.read_twin(s.hub(), "dev-1").await.unwrap(), Some(second));
    let state = s.registry.state.lock().unwrap();
    let stored = &state.devices["dev-1"].1;
    assert_eq!(stored["authentication"]["symmetricKey"]["primaryKey"], "bmV3");
    assert_eq!(stored["capabilities"]["iotEdge"], true);
}

#[tokio::test]
async fn a_stale_twin_etag_is_read_again_and_retried() {
    let s = Setup::new().await;
    s.connector.upsert_device(s.hub(), &device()).await.unwrap();
    // Between the connector's GET and its PATCH, someone else writes the twin: the PATCH gets 412. (The first
    // fault writes no twin: the GET is served as is.)
    let wanted = twin(json!({ "tags": { "t": 1 }, "properties": { "desired": { "d": 2 } } }));
    let requests_before = s.registry.server.requests().len();
    s.registry.fault(Fault::ConcurrentTwinWrite("no such device"));
    s.registry.fault(Fault::ConcurrentTwinWrite("dev-1"));
    s.connector.apply_twin(s.hub(), "dev-1", &wanted).await.unwrap();
    let methods: Vec<_> = s.registry.server.requests()[requests_before..].iter().map(|r| r.method.clone()).collect();
    assert_eq!(methods, ["GET", "PATCH", "GET", "PATCH"], "412, then read again and patched");
    assert_eq!(s.connector.read_twin(s.hub(), "dev-1").await.unwrap(), Some(wanted));
}

#[tokio::test]
async fn throttling_is_retried_after_retry_after_and_then_reported() {
    let s = Setup::new().await;
    s.registry.fault(Fault::Status(429, Some("1")));
    s.registry.fault(Fault::Status(503, None));
    let started = Instant::now();
    s.connector.upsert_device(s.hub(), &device()).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "waited for Retry-After");
    assert!(s.registry.state.lock().unwrap().devices.contains_key("dev-1"));

    for _ in 0..3 {
        s.registry.fault(Fault::Status(429, Some("0")));
    }
    let failure = s.connector.remove_device(s.hub(), "dev-1").await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Throttled, "{failure:?}");
    assert!(failure.message.contains("429") && failure.message.contains("3 attempts"), "{}", failure.message);

    // A hub asking to wait longer than the connector may: reported at once.
    s.registry.fault(Fault::Status(429, Some("120")));
    let started = Instant::now();
    let failure = s.connector.read_twin(s.hub(), "dev-1").await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Throttled);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn server_errors_and_hangs_end_as_unreachable_within_the_bound() {
    let s = Setup::new().await;
    for _ in 0..3 {
        s.registry.fault(Fault::Status(500, None));
    }
    let failure = s.connector.upsert_device(s.hub(), &device()).await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Unreachable, "{failure:?}");

    for _ in 0..3 {
        s.registry.fault(Fault::Hang);
    }
    let started = Instant::now();
    let failure = s.connector.upsert_device(s.hub(), &device()).await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Unreachable, "{failure:?}");
    assert!(failure.message.contains("timed out"), "{}", failure.message);
    assert!(started.elapsed() < quick().total + Duration::from_secs(1), "{:?}", started.elapsed());

    // The call's total bounds its attempts too: the second attempt gets only what is left of 700 ms.
    let tight = Limits { total: Duration::from_millis(700), ..quick() };
    let bounded = AzureIotHubConnector::with_limits(tight).with_endpoint(&s.registry.server.url);
    s.registry.state.lock().unwrap().faults.clear();
    for _ in 0..3 {
        s.registry.fault(Fault::Hang);
    }
    let started = Instant::now();
    let failure = bounded.remove_device(s.hub(), "dev-1").await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Unreachable, "{failure:?}");
    assert!(failure.message.contains("2 attempts"), "{}", failure.message);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(650) && elapsed < Duration::from_millis(950), "{elapsed:?}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let nowhere = AzureIotHubConnector::with_limits(quick()).with_endpoint(format!("http://{closed}"));
    let failure = nowhere.read_twin(s.hub(), "dev-1").await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Unreachable, "{failure:?}");
    assert!(
        failure.message.contains("could not connect") && failure.message.contains("refused"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn missing_devices_and_refusals() {
    let s = Setup::new().await;
    assert_eq!(s.connector.read_twin(s.hub(), "absent").await.unwrap(), None);
    s.connector.remove_device(s.hub(), "absent").await.unwrap();
    let failure = s.connector.apply_twin(s.hub(), "absent", &HubTwin::default()).await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Refused);

    // A wrong key: the hub answers 401; the message names the status, never the key or a token.
    let wrong = connection_string().replace(KEY, "d3Jvbmcta2V5LXdyb25nLWtleQ==");
    let hub = HubTarget { host_name: HOST, settings: &s.settings, credentials: Some(&wrong) };
    let failure = s.connector.upsert_device(hub, &device()).await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Refused);
    assert!(failure.message.contains("401"), "{}", failure.message);
    for secret in ["d3Jvbmcta2V5LXdyb25nLWtleQ==", KEY, "SharedAccessSignature", "sig="] {
        assert!(!failure.message.contains(secret), "{}", failure.message);
    }

    let x509_without_certificate = HubDevice { symmetric_keys: None, ..device() };
    let failure = s.connector.upsert_device(s.hub(), &x509_without_certificate).await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::Refused);
}

#[tokio::test]
async fn connection_strings_are_checked_when_linking_and_against_the_hub() {
    let s = Setup::new().await;
    assert_eq!(s.connector.check_settings(&Map::new(), Some(&connection_string())), Ok(()));
    let err = s.connector.check_settings(&Map::new(), None).unwrap_err();
    assert!(err.contains("connection string"), "{err}");
    let mut settings = Map::new();
    settings.insert("region".into(), json!("x"));
    assert!(s.connector.check_settings(&settings, Some(&connection_string())).is_err());
    let err = s.connector.check_settings(&Map::new(), Some("HostName=h;SharedAccessKeyName=k")).unwrap_err();
    assert!(err.contains("SharedAccessKey"), "{err}");

    let other = HubTarget { host_name: "other.azure-devices.net", ..s.hub() };
    let failure = s.connector.upsert_device(other, &device()).await.unwrap_err();
    assert_eq!(failure.kind, HubFailureKind::NotConfigured);
    assert!(!failure.message.contains(KEY), "{}", failure.message);
    assert!(s.registry.server.requests().is_empty(), "nothing sent with a connection string for another hub");
}
