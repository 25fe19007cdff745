//! Registrations that reach hubs through the hub port: first assignment, moves with migration and with reset,
//! failures part-way and the device's retry, owed removals, and linked hub connectors on the service API.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dps_core::hubs::{
    HubConnector, HubConnectors, HubDevice, HubFailure, HubFailureKind, HubTarget, HubTwin, KeySecretBox,
};
use dps_core::model::{HubConnection, HubKind, LinkedHub, RegistrationStatus, Substatus};
use dps_core::store::Precondition;
use dps_core::{Dps, Settings};
use serde_json::{Map, Value, json};
use support::*;

/// A hub registry in memory: devices by (hub, device ID) with their twins; every call logged; a fault can be
/// planted on the N-th call from now.
#[derive(Default)]
struct FakeRegistry {
    devices: BTreeMap<(String, String), HubTwin>,
    calls: Vec<String>,
    fail_at: Option<(usize, HubFailureKind)>,
    credentials_seen: Vec<Option<String>>,
    /// Removals from this hub wait until released (a slow removal still in flight).
    held_removals: Option<(String, Arc<tokio::sync::Notify>, Arc<tokio::sync::Notify>)>,
}

#[derive(Clone, Default)]
struct FakeHubs(Arc<Mutex<FakeRegistry>>);

impl FakeHubs {
    fn call(&self, what: String, hub: &HubTarget<'_>) -> Result<(), HubFailure> {
        let mut state = self.0.lock().unwrap();
        state.calls.push(what);
        state.credentials_seen.push(hub.credentials.map(str::to_string));
        if let Some((n, kind)) = state.fail_at {
            if n == 0 {
                state.fail_at = None;
                return Err(HubFailure::new(kind, "injected failure"));
            }
            state.fail_at = Some((n - 1, kind));
        }
        Ok(())
    }
    fn fail_at(&self, nth: usize, kind: HubFailureKind) {
        self.0.lock().unwrap().fail_at = Some((nth, kind));
    }
    fn twin(&self, hub: &str, device: &str) -> Option<HubTwin> {
        self.0.lock().unwrap().devices.get(&(hub.to_string(), device.to_string())).cloned()
    }
    fn hubs_of(&self, device: &str) -> Vec<String> {
        self.0.lock().unwrap().devices.keys().filter(|(_, d)| d == device).map(|(h, _)| h.clone()).collect()
    }
    fn take_calls(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap().calls)
    }
    fn set_twin(&self, hub: &str, device: &str, twin: HubTwin) {
        self.0.lock().unwrap().devices.insert((hub.into(), device.into()), twin);
    }
}

#[async_trait]
impl HubConnector for FakeHubs {
    fn check_settings(&self, settings: &Map<String, Value>, credentials: Option<&str>) -> Result<(), String> {
        if settings.contains_key("bad") {
            return Err("setting 'bad' is not allowed".into());
        }
        if settings.contains_key("url") && credentials.is_none() {
            return Err("this registry needs its secret".into());
        }
        Ok(())
    }
    async fn upsert_device(&self, hub: HubTarget<'_>, device: &HubDevice) -> Result<(), HubFailure> {
        self.call(format!("upsert {} {}", hub.host_name, device.device_id), &hub)?;
        let mut state = self.0.lock().unwrap();
        state.devices.entry((hub.host_name.into(), device.device_id.clone())).or_default();
        Ok(())
    }
    async fn apply_twin(&self, hub: HubTarget<'_>, device_id: &str, twin: &HubTwin) -> Result<(), HubFailure> {
        self.call(format!("twin {} {device_id}", hub.host_name), &hub)?;
        self.set_twin(hub.host_name, device_id, twin.clone());
        Ok(())
    }
    async fn read_twin(&self, hub: HubTarget<'_>, device_id: &str) -> Result<Option<HubTwin>, HubFailure> {
        self.call(format!("read {} {device_id}", hub.host_name), &hub)?;
        Ok(self.twin(hub.host_name, device_id))
    }
    async fn remove_device(&self, hub: HubTarget<'_>, device_id: &str) -> Result<(), HubFailure> {
        self.call(format!("remove {} {device_id}", hub.host_name), &hub)?;
        let held = self.0.lock().unwrap().held_removals.clone().filter(|(h, _, _)| h == hub.host_name);
        if let Some((_, entered, release)) = held {
            entered.notify_one();
            release.notified().await;
        }
        self.0.lock().unwrap().devices.remove(&(hub.host_name.to_string(), device_id.to_string()));
        Ok(())
    }
    /// Answers the CSR itself, wrapped, so that the test can see it come back.
    async fn issue_certificate(
        &self,
        hub: HubTarget<'_>,
        device: &HubDevice,
        csr: &[u8],
    ) -> Result<Vec<Vec<u8>>, HubFailure> {
        self.call(format!("issue {} {}", hub.host_name, device.device_id), &hub)?;
        Ok(vec![[b"issued:".as_slice(), csr].concat()])
    }
}

fn connected(host: &str) -> LinkedHub {
    LinkedHub {
        connector: Some(HubConnection {
            kind: HubKind::HttpRegistry,
            settings: Map::new(),
            credentials: None,
            credentials_set: false,
        }),
        ..hub(host, 1, true, None)
    }
}

/// A fixture whose service has the fake connector (as `httpRegistry`) and a secret box.
async fn fixture(linked: Vec<LinkedHub>) -> (Fixture, FakeHubs) {
    let fake = FakeHubs::default();
    let mut f = Fixture::new(Vec::new()).await;
    f.dps = Dps::new(f.store.clone(), Settings::default())
        .with_hubs(HubConnectors::none().with(HubKind::HttpRegistry, Arc::new(fake.clone())))
        .with_secret_box(Arc::new(KeySecretBox::new(&KeySecretBox::generate_key())));
    f.link(linked).await;
    (f, fake)
}

/// hub-b takes over automatic allocation; hub-a stays linked (its connector is how a device leaves it).
async fn hand_over_to_hub_b(f: &Fixture) {
    f.link(vec![
        connected("hub-b.example.net"),
        LinkedHub { apply_allocation_policy: false, ..connected("hub-a.example.net") },
    ])
    .await;
}

/// `dev-1`, enrolled with `body` and registered in hub-a; then hub-b takes over (the calls so far are forgotten).
/// Returns the device's key.
async fn registered_then_handed_over(body: Value) -> (Fixture, FakeHubs, String) {
    let (f, fake) = fixture(vec![connected("hub-a.example.net")]).await;
    f.enroll(individual("dev-1", body)).await;
    let (key, _) = f.keys("dev-1").await;
    f.register("dev-1", &key).await.unwrap();
    hand_over_to_hub_b(&f).await;
    fake.take_calls();
    (f, fake, key)
}

fn twin_body() -> Value {
    json!({ "tags": { "site": "berlin" }, "properties": { "desired": { "interval": 30 } } })
}

#[tokio::test]
async fn first_assignment_creates_the_device_with_its_initial_twin() {
    let (f, fake) = fixture(vec![connected("hub-a.example.net")]).await;
    f.enroll(individual("dev-1", json!({ "initialTwin": twin_body() }))).await;
    let (key, _) = f.keys("dev-1").await;
    let record = f.register("dev-1", &key).await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Assigned);
    assert_eq!(fake.take_calls(), ["upsert hub-a.example.net dev-1", "twin hub-a.example.net dev-1"]);
    let twin = fake.twin("hub-a.example.net", "dev-1").unwrap();
    assert_eq!(twin.tags["site"], "berlin");
    assert_eq!(twin.desired["interval"], 30);
    // Registering again on the same hub makes sure the device exists, and leaves its twin alone.
    fake.set_twin("hub-a.example.net", "dev-1", HubTwin::default());
    f.register("dev-1", &key).await.unwrap();
    assert_eq!(fake.take_calls(), ["upsert hub-a.example.net dev-1"]);
    assert_eq!(fake.twin("hub-a.example.net", "dev-1"), Some(HubTwin::default()));
}

#[tokio::test]
async fn record_only_hubs_are_not_called() {
    let (f, fake) = fixture(vec![hub("plain.example.net", 1, true, None)]).await;
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    assert_eq!(f.register("dev-1", &key).await.unwrap().status, RegistrationStatus::Assigned);
    assert!(fake.take_calls().is_empty());
}

#[tokio::test]
async fn a_hub_failure_fails_the_registration_and_the_retry_completes_it() {
    for (nth, kind, code) in [
        (0, HubFailureKind::Unreachable, 503_301),
        (1, HubFailureKind::Throttled, 429_301),
        (1, HubFailureKind::Refused, 502_301),
    ] {
        let (f, fake) = fixture(vec![connected("hub-a.example.net")]).await;
        f.enroll(individual("dev-1", json!({ "initialTwin": twin_body() }))).await;
        let (key, _) = f.keys("dev-1").await;
        fake.fail_at(nth, kind);
        let failed = f.register("dev-1", &key).await.unwrap();
        assert_eq!(failed.status, RegistrationStatus::Failed, "{kind:?}");
        assert_eq!(failed.error_code, Some(code));
        assert!(failed.error_message.as_deref().unwrap().contains("hub-a.example.net"));
        assert_eq!(failed.assigned_hub, None, "no record claims a hub the device is not provisioned in");
        // The device was (perhaps) half-made in the hub: the record owed its removal and made it.
        assert!(fake.hubs_of("dev-1").is_empty(), "{kind:?}: {:?}", fake.hubs_of("dev-1"));
        assert!(failed.pending_hub_removals.is_empty());
        let retried = f.register("dev-1", &key).await.unwrap();
        assert_eq!(retried.status, RegistrationStatus::Assigned);
        assert_eq!(retried.substatus, Some(Substatus::InitialAssignment));
        assert_eq!(fake.twin("hub-a.example.net", "dev-1").unwrap().desired["interval"], 30);
    }
}

#[tokio::test]
async fn a_move_migrates_the_twin_and_removes_the_device_from_the_old_hub() {
    let (f, fake) = fixture(vec![connected("hub-a.example.net")]).await;
    f.enroll(individual("dev-1", json!({ "initialTwin": twin_body() }))).await;
    let (key, _) = f.keys("dev-1").await;
    f.register("dev-1", &key).await.unwrap();
    // The device's twin changed in its hub since.
    let mut changed = fake.twin("hub-a.example.net", "dev-1").unwrap();
    changed.desired.insert("interval".into(), json!(99));
    fake.set_twin("hub-a.example.net", "dev-1", changed.clone());
    fake.take_calls();
    hand_over_to_hub_b(&f).await;
    let moved = f.register("dev-1", &key).await.unwrap();
    assert_eq!(moved.assigned_hub.as_deref(), Some("hub-b.example.net"));
    assert_eq!(moved.substatus, Some(Substatus::DeviceDataMigrated));
    assert_eq!(
        fake.take_calls(),
        [
            "read hub-a.example.net dev-1",
            "upsert hub-b.example.net dev-1",
            "twin hub-b.example.net dev-1",
            "remove hub-a.example.net dev-1"
        ]
    );
    assert_eq!(fake.twin("hub-b.example.net", "dev-1"), Some(changed));
    assert_eq!(fake.hubs_of("dev-1"), ["hub-b.example.net"]);
    assert!(moved.pending_hub_removals.is_empty());
}

#[tokio::test]
async fn a_move_with_reset_applies_the_initial_twin() {
    let (f, fake) = fixture(vec![connected("hub-a.example.net")]).await;
    let reset = json!({ "initialTwin": twin_body(), "reprovisionPolicy": { "updateHubAssignment": true, "migrateDeviceData": false } });
    f.enroll(individual("dev-1", reset)).await;
    let (key, _) = f.keys("dev-1").await;
    f.register("dev-1", &key).await.unwrap();
    fake.set_twin("hub-a.example.net", "dev-1", HubTwin::default());
    hand_over_to_hub_b(&f).await;
    fake.take_calls();
    let moved = f.register("dev-1", &key).await.unwrap();
    assert_eq!(moved.substatus, Some(Substatus::DeviceDataReset));
    let calls = fake.take_calls();
    assert!(!calls.iter().any(|c| c.starts_with("read")), "reset does not read the old twin: {calls:?}");
    assert_eq!(fake.twin("hub-b.example.net", "dev-1").unwrap().tags["site"], "berlin");
    assert_eq!(fake.hubs_of("dev-1"), ["hub-b.example.net"]);
}

#[tokio::test]
async fn a_failed_removal_is_recorded_and_retried_at_the_next_registration() {
    let (f, fake, key) = registered_then_handed_over(json!({})).await;
    // read (migration), upsert, twin (the old hub's, empty but present), remove: the removal fails.
    fake.fail_at(3, HubFailureKind::Unreachable);
    let moved = f.register("dev-1", &key).await.unwrap();
    assert_eq!(moved.status, RegistrationStatus::Assigned);
    assert_eq!(moved.assigned_hub.as_deref(), Some("hub-b.example.net"));
    assert_eq!(moved.pending_hub_removals.len(), 1, "the record says the device may still be in hub-a");
    assert_eq!(moved.pending_hub_removals[0].hub, "hub-a.example.net");
    let stored = f.store.device_context(f.scope(), "dev-1").await.unwrap().record.unwrap();
    assert_eq!(stored.pending_hub_removals, moved.pending_hub_removals);
    assert_eq!(fake.hubs_of("dev-1").len(), 2);
    let again = f.register("dev-1", &key).await.unwrap();
    assert!(again.pending_hub_removals.is_empty());
    assert_eq!(fake.hubs_of("dev-1"), ["hub-b.example.net"]);
}

#[tokio::test]
async fn a_failed_move_leaves_the_device_in_its_old_hub() {
    let (f, fake, key) = registered_then_handed_over(json!({ "initialTwin": twin_body() })).await;
    fake.fail_at(2, HubFailureKind::Throttled); // read, upsert, then the twin fails
    let failed = f.register("dev-1", &key).await.unwrap();
    assert_eq!(failed.status, RegistrationStatus::Failed);
    assert_eq!(failed.assigned_hub.as_deref(), Some("hub-a.example.net"));
    assert_eq!(fake.hubs_of("dev-1"), ["hub-a.example.net"], "the half-made device in hub-b was removed");
    let moved = f.register("dev-1", &key).await.unwrap();
    assert_eq!(moved.assigned_hub.as_deref(), Some("hub-b.example.net"));
    assert_eq!(fake.twin("hub-b.example.net", "dev-1").unwrap().tags["site"], "berlin", "migrated from hub-a");
    assert_eq!(fake.hubs_of("dev-1"), ["hub-b.example.net"]);
}

#[tokio::test]
async fn group_devices_reach_the_hub_with_their_derived_keys() {
    let (f, fake) = fixture(vec![connected("hub-a.example.net")]).await;
    f.enroll_group(group("g1", json!({}))).await;
    let (group_key, _) = f.group_keys("g1").await;
    assert_eq!(f.register_in_group("sensor-7", &group_key).await.unwrap().status, RegistrationStatus::Assigned);
    assert_eq!(fake.hubs_of("sensor-7"), ["hub-a.example.net"]);
}

#[tokio::test]
async fn linked_hub_credentials_are_sealed_write_only_and_kept() {
    let (f, fake) = fixture(Vec::new()).await;
    let owner = f.owner().await;
    let secret = "HostName=hub-a;SharedAccessKey=c2VjcmV0LXZhbHVl";
    let mut hub = connected("hub-a.example.net");
    hub.connector.as_mut().unwrap().credentials = Some(secret.into());
    let answer = f.dps.put_linked_hub(&owner, hub).await.unwrap();
    let shown = answer.connector.unwrap();
    assert!(shown.credentials.is_none() && shown.credentials_set);
    let config = f.dps.get_config(&owner).await.unwrap();
    let text = serde_json::to_string(&config).unwrap();
    assert!(!text.contains("c2VjcmV0LXZhbHVl") && text.contains("\"credentialsSet\":true"), "{text}");
    let stored = f.store.instance_by_scope(f.scope()).await.unwrap().unwrap();
    let sealed = stored.linked_hubs[0].connector.as_ref().unwrap().credentials.clone().unwrap();
    assert!(!sealed.contains("c2VjcmV0LXZhbHVl"), "stored sealed: {sealed}");
    // A PUT without credentials (as a GET shows the hub) keeps them; the connector gets them opened.
    let mut again = config.linked_hubs[0].clone();
    again.allocation_weight = 5;
    f.dps.put_linked_hub(&owner, again).await.unwrap();
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    f.register("dev-1", &key).await.unwrap();
    assert_eq!(fake.0.lock().unwrap().credentials_seen.last().cloned().flatten().as_deref(), Some(secret));
}

#[tokio::test]
async fn linking_a_hub_with_a_connector_this_deployment_lacks_or_bad_settings_is_refused() {
    let (f, _) = fixture(Vec::new()).await;
    let owner = f.owner().await;
    let mut aws = connected("things.example.net");
    aws.connector.as_mut().unwrap().kind = HubKind::AwsIotCore;
    let err = f.dps.put_linked_hub(&owner, aws).await.unwrap_err().to_string();
    assert!(err.contains("no awsIotCore connector") && err.contains("httpRegistry"), "{err}");
    let mut bad = connected("hub-a.example.net");
    bad.connector.as_mut().unwrap().settings.insert("bad".into(), json!(1));
    let err = f.dps.put_linked_hub(&owner, bad).await.unwrap_err().to_string();
    assert!(err.contains("setting 'bad' is not allowed"), "{err}");
    assert!(f.dps.get_config(&owner).await.unwrap().linked_hubs.is_empty(), "nothing was stored");
}

#[tokio::test]
async fn a_csr_gets_the_device_a_certificate_from_its_hub_and_bad_csrs_are_refused_before_any_hub_call() {
    use base64::Engine as _;
    use dps_attestation::testing::{KeyKind, WEAK_RSA_CSR, csr};
    let (f, fake) = fixture(vec![connected("hub-a.example.net"), hub("plain.example.net", 1, false, None)]).await;
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    let with_csr = |der: Vec<u8>| {
        let mut req = register_request(f.scope(), "dev-1", &key);
        req.api_version = "2025-07-01-preview".into();
        req.csr = Some(der);
        req
    };

    for (what, der) in [
        ("wrong CN", csr("someone-else", KeyKind::EcdsaP256).0),
        ("weak key", WEAK_RSA_CSR.to_vec()),
        ("garbage", b"not a certificate request".to_vec()),
        ("oversized", vec![0x30; 64 << 10]),
    ] {
        let err = f.dps.register(with_csr(der)).await.unwrap_err();
        assert!(matches!(err, dps_core::Error::Invalid(_)), "{what}: {err}");
        assert!(fake.take_calls().is_empty(), "{what}: no hub call");
        assert!(f.store.device_context(f.scope(), "dev-1").await.unwrap().record.is_none(), "{what}: nothing recorded");
    }

    let (der, _) = csr("DEV-1", KeyKind::EcdsaP256);
    let record = f.dps.register(with_csr(der.clone())).await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Assigned);
    let chain = record.issued_certificate_chain.expect("issued chain");
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(&chain[0]).unwrap(),
        [b"issued:".as_slice(), &der].concat()
    );
    assert_eq!(fake.take_calls(), ["upsert hub-a.example.net dev-1", "issue hub-a.example.net dev-1"]);

    // A record-only hub issues nothing: the registration fails with the certificate code, not `assigned`.
    f.enroll(individual("dev-2", json!({ "allocationPolicy": "static", "iotHubHostName": "plain.example.net" }))).await;
    let (key2, _) = f.keys("dev-2").await;
    let mut req = register_request(f.scope(), "dev-2", &key2);
    req.api_version = "2025-07-01-preview".into();
    req.csr = Some(csr("dev-2", KeyKind::EcdsaP256).0);
    let failed = f.dps.register(req).await.unwrap();
    assert_eq!(failed.status, RegistrationStatus::Failed);
    assert_eq!(failed.error_code, Some(502_302));
}

#[tokio::test]
async fn kept_credentials_satisfy_the_connector_and_go_only_where_they_went() {
    let (f, fake) = fixture(Vec::new()).await;
    let owner = f.owner().await;
    let mut hub = connected("reg.example.net");
    let link = hub.connector.as_mut().unwrap();
    link.settings.insert("url".into(), json!("https://registry-a.example.net"));
    link.credentials = Some("secret-for-registry-a".into());
    f.dps.put_linked_hub(&owner, hub).await.unwrap();
    // The hub as a GET shows it (no credentials), weight changed: accepted, and the secret kept.
    let mut shown = f.dps.get_config(&owner).await.unwrap().linked_hubs[0].clone();
    shown.allocation_weight = 7;
    let kept = f.dps.put_linked_hub(&owner, shown.clone()).await.unwrap();
    assert!(kept.connector.as_ref().unwrap().credentials_set);
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    f.register("dev-1", &key).await.unwrap();
    assert_eq!(
        fake.0.lock().unwrap().credentials_seen.last().cloned().flatten().as_deref(),
        Some("secret-for-registry-a")
    );
    // Pointing the hub elsewhere without sending the secret again is refused: it is not sent to the new place.
    shown.connector.as_mut().unwrap().settings.insert("url".into(), json!("https://elsewhere.example.net"));
    let err = f.dps.put_linked_hub(&owner, shown).await.unwrap_err().to_string();
    assert!(err.contains("needs its secret"), "{err}");
}

#[tokio::test]
async fn a_hub_failure_is_told_as_a_failed_registration_with_its_code() {
    let (f, fake) = fixture(vec![connected("hub-a.example.net")]).await;
    let (f, events) = f.recording();
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    events.take();
    fake.fail_at(0, HubFailureKind::Unreachable);
    let failed = f.register("dev-1", &key).await.unwrap();
    assert_eq!(failed.status, RegistrationStatus::Failed);
    let retried = f.register("dev-1", &key).await.unwrap();
    assert_eq!(retried.status, RegistrationStatus::Assigned);
    let got = events.take();
    let types: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["dps.registration.failed", "dps.registration.assigned"]);
    assert_eq!(got[0]["data"]["errorCode"], 503301);
    assert_eq!(got[0]["data"]["errorCode"], json!(failed.error_code.unwrap()));
    assert_eq!(got[0]["data"]["errorMessage"], json!(failed.error_message.unwrap()));
}

/// Two registrations of one device at once: the first moves it from hub-a to hub-b and is still removing it from
/// hub-a when the second moves it back to hub-a. The second waits until the first has settled its removal, so
/// the late removal cannot take the device out of the hub the newer record assigns it to.
#[tokio::test]
async fn a_move_back_while_the_old_hub_removal_is_in_flight_waits_for_it() {
    let (f, fake) = fixture(vec![connected("hub-a.example.net"), connected("hub-b.example.net")]).await;
    let pinned = |hub: &str, keys: &(String, String)| {
        individual(
            "dev-1",
            json!({
                "iotHubs": [hub],
                "attestation": { "type": "symmetricKey", "symmetricKey": { "primaryKey": keys.0, "secondaryKey": keys.1 } },
            }),
        )
    };
    f.enroll(individual("dev-1", json!({ "iotHubs": ["hub-a.example.net"] }))).await;
    let keys = f.keys("dev-1").await;
    assert_eq!(f.register("dev-1", &keys.0).await.unwrap().assigned_hub.as_deref(), Some("hub-a.example.net"));

    let (entered, release) = (Arc::new(tokio::sync::Notify::new()), Arc::new(tokio::sync::Notify::new()));
    fake.0.lock().unwrap().held_removals = Some(("hub-a.example.net".into(), entered.clone(), release.clone()));
    f.enroll(pinned("hub-b.example.net", &keys)).await;
    let away = f.register("dev-1", &keys.0);
    let back = async {
        entered.notified().await;
        // The first registration's record (hub-b) is written; its removal from hub-a is in flight.
        let stored = f.store.device_context(f.scope(), "dev-1").await.unwrap().record.unwrap();
        assert_eq!(stored.assigned_hub.as_deref(), Some("hub-b.example.net"));
        assert!(stored.settling_until.is_some(), "the record holds a settling lease while removals are owed");
        f.enroll(pinned("hub-a.example.net", &keys)).await;
        let mut second = std::pin::pin!(f.register("dev-1", &keys.0));
        let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut second).await;
        assert!(early.is_err(), "the second registration waits while the first settles: {early:?}");
        fake.0.lock().unwrap().held_removals = None;
        release.notify_one();
        second.await
    };
    let (away, back) = tokio::join!(away, back);
    assert_eq!(away.unwrap().assigned_hub.as_deref(), Some("hub-b.example.net"));
    let back = back.unwrap();
    assert_eq!(back.assigned_hub.as_deref(), Some("hub-a.example.net"));
    assert_eq!(fake.hubs_of("dev-1"), ["hub-a.example.net"], "the device is where its record says, and only there");
    let stored = f.store.device_context(f.scope(), "dev-1").await.unwrap().record.unwrap();
    assert_eq!(stored.assigned_hub.as_deref(), Some("hub-a.example.net"));
    assert!(stored.pending_hub_removals.is_empty() && stored.settling_until.is_none(), "{stored:?}");
}

/// A registration that finds another still settling past its wait answers 429 with the lease's remaining time;
/// nothing is written and the hubs are not called.
#[tokio::test]
async fn a_registration_that_cannot_wait_out_a_settling_lease_is_throttled() {
    let (f, fake) = fixture(vec![connected("hub-a.example.net")]).await;
    f.enroll(individual("dev-1", json!({}))).await;
    let (key, _) = f.keys("dev-1").await;
    let mut record = f.register("dev-1", &key).await.unwrap();
    // As a registration that crashed while removing the device from a hub leaves it: 25 s of its lease left.
    let etag = record.etag.clone().unwrap();
    record.settling_until = Some((time::OffsetDateTime::now_utc().unix_timestamp() + 25) * 1000);
    let leased = f.store.put_registration(f.scope(), record, Precondition::Matches(etag).into()).await.unwrap();
    fake.take_calls();
    let refused = f.register("dev-1", &key).await;
    match refused {
        Err(dps_core::Error::Throttled { retry_after_secs, .. }) => {
            assert!((10..=26).contains(&retry_after_secs), "{retry_after_secs}")
        }
        other => panic!("expected 429: {other:?}"),
    }
    assert!(fake.take_calls().is_empty(), "no hub call while another registration settles");
    let stored = f.store.device_context(f.scope(), "dev-1").await.unwrap().record.unwrap();
    assert_eq!(stored, leased, "nothing written");

    // A lease no writer takes (beyond 30 s from now, as a forged record could hold) does not hold the device off.
    let mut forged = stored;
    forged.settling_until = Some((time::OffsetDateTime::now_utc().unix_timestamp() + 3600) * 1000);
    let etag = forged.etag.clone().unwrap();
    f.store.put_registration(f.scope(), forged, Precondition::Matches(etag).into()).await.unwrap();
    let again = f.register("dev-1", &key).await.unwrap();
    assert_eq!(again.status, RegistrationStatus::Assigned);
    assert_eq!(again.settling_until, None);
}
