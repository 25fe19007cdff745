//! TPM attestation use cases over the in-memory store, with the EKs and SRKs of two real software TPMs
//! (fixtures/tpm.json, read from swtpm). The device's side of the key (ActivateCredential + Import in its TPM) is
//! what tests/tpm checks against swtpm; here the test plays a device that already holds the issued key, read from
//! the store.

mod support;

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dps_core::model::{AttestationType, IndividualEnrollment, RegistrationStatus, TpmRegistration};
use dps_core::store::EnrollmentStore;
use dps_core::usecases::{DeviceCaller, RegisterRequest};
use dps_core::{Error, Settings};
use serde_json::{Value, json};
use support::*;

fn fixture_tpm(name: &str) -> TpmRegistration {
    let all: Value = serde_json::from_str(include_str!("fixtures/tpm.json")).unwrap();
    serde_json::from_value(all[name].clone()).unwrap()
}

fn tpm_enrollment(id: &str, tpm: &TpmRegistration, with_srk: bool) -> Value {
    let mut attestation = json!({ "endorsementKey": tpm.endorsement_key });
    if with_srk {
        attestation["storageRootKey"] = json!(tpm.storage_root_key);
    }
    json!({ "registrationId": id, "attestation": { "type": "tpm", "tpm": attestation } })
}

fn tpm_request(f: &Fixture, id: &str, tpm: &TpmRegistration, authorization: Option<String>) -> RegisterRequest {
    RegisterRequest {
        caller: DeviceCaller {
            id_scope: f.scope().to_string(),
            registration_id: id.into(),
            body_registration_id: Some(id.into()),
            authorization,
            ..Default::default()
        },
        api_version: "2021-06-01".into(),
        tpm: Some(tpm.clone()),
        ..RegisterRequest::default()
    }
}

/// The first register: the 401 challenge; returns the authenticationKey and the key the device's TPM now holds.
async fn challenge(f: &Fixture, id: &str, tpm: &TpmRegistration) -> (String, String) {
    let answer = f.dps.register(tpm_request(f, id, tpm, None)).await;
    let Err(Error::TpmChallenge { authentication_key }) = answer else { panic!("expected the challenge: {answer:?}") };
    let stored = f.store.get_tpm_challenge(f.scope(), id).await.unwrap().expect("the challenge is stored");
    assert_eq!(stored.authentication_key, authentication_key);
    (authentication_key, stored.key)
}

/// Register with `request`, expecting a 401 whose message holds `why`, and no record written.
async fn assert_refused(f: &Fixture, request: RegisterRequest, why: &str) {
    let id = request.caller.registration_id.clone();
    let answer = f.dps.register(request).await;
    assert!(matches!(&answer, Err(Error::Unauthorized(m)) if m.contains(why)), "{why}: {answer:?}");
    assert_eq!(f.store.get_registration(f.scope(), &id).await.unwrap(), None, "nothing recorded");
}

async fn enrolled(linked: usize) -> Fixture {
    let f = Fixture::new(hubs(linked)).await;
    f.enroll(tpm_enrollment("tpm-device-1", &fixture_tpm("a"), false)).await;
    f
}

#[tokio::test]
async fn challenge_then_signed_register_assigns() {
    let f = enrolled(2).await;
    let tpm = fixture_tpm("a");
    let (blob, key) = challenge(&f, "tpm-device-1", &tpm).await;
    let raw = B64.decode(&blob).unwrap();
    assert!(raw.len() > 2 * 256 + 100, "an ID object, two RSA-2048 secrets, a duplicate and a public area");

    let token = device_token(f.scope(), "tpm-device-1", &key, later());
    let record = f.dps.register(tpm_request(&f, "tpm-device-1", &tpm, Some(token.clone()))).await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Assigned);
    assert!(record.assigned_hub.is_some());
    assert_eq!(record.device_id.as_deref(), Some("tpm-device-1"));
    assert_eq!(record.attestation_type, AttestationType::Tpm);
    assert_eq!(record.tpm.as_ref().unwrap().authentication_key, blob, "registrationState.tpm.authenticationKey");

    // Status lookups with the same key work while the challenge lives.
    let status = f.dps.registration_status(f.status("tpm-device-1", &key, None)).await.unwrap();
    assert_eq!(status.etag, record.etag);
    let op = f.dps.operation_status(f.status("tpm-device-1", &key, Some(&record.operation_id))).await.unwrap();
    assert_eq!(op.status, RegistrationStatus::Assigned);

    // A replay of the signed register is refused and changes nothing.
    let replay = f.dps.register(tpm_request(&f, "tpm-device-1", &tpm, Some(token))).await;
    assert!(matches!(&replay, Err(Error::Unauthorized(m)) if m.contains("already used")), "{replay:?}");
    assert_eq!(f.store.get_registration(f.scope(), "tpm-device-1").await.unwrap().unwrap().etag, record.etag);

    // A new challenge makes a re-registration possible.
    let (_, key2) = challenge(&f, "tpm-device-1", &tpm).await;
    assert_ne!(key2, key, "every challenge issues a fresh key");
    let token = device_token(f.scope(), "tpm-device-1", &key2, later());
    let again = f.dps.register(tpm_request(&f, "tpm-device-1", &tpm, Some(token))).await.unwrap();
    assert_eq!(again.status, RegistrationStatus::Assigned);
    assert_eq!(again.assigned_hub, record.assigned_hub);
}

#[tokio::test]
async fn a_sas_signed_with_another_key_is_refused() {
    let f = enrolled(1).await;
    let tpm = fixture_tpm("a");
    challenge(&f, "tpm-device-1", &tpm).await;
    let token = device_token(f.scope(), "tpm-device-1", &random_key(), later());
    assert_refused(&f, tpm_request(&f, "tpm-device-1", &tpm, Some(token)), "not signed with the key").await;
    assert!(!f.store.get_tpm_challenge(f.scope(), "tpm-device-1").await.unwrap().unwrap().consumed);
}

#[tokio::test]
async fn an_expired_challenge_is_refused() {
    let settings = Settings { tpm_challenge_ttl: Duration::ZERO, ..Settings::default() };
    let f = Fixture::with_settings(hubs(1), settings).await;
    let tpm = fixture_tpm("a");
    f.enroll(tpm_enrollment("tpm-device-1", &tpm, false)).await;
    let answer = f.dps.register(tpm_request(&f, "tpm-device-1", &tpm, None)).await;
    assert!(matches!(answer, Err(Error::TpmChallenge { .. })));
    assert_eq!(f.store.get_tpm_challenge(f.scope(), "tpm-device-1").await.unwrap(), None, "already expired");
    let token = device_token(f.scope(), "tpm-device-1", &random_key(), later());
    assert_refused(&f, tpm_request(&f, "tpm-device-1", &tpm, Some(token)), "expired").await;
}

#[tokio::test]
async fn another_tpm_gets_no_challenge() {
    let f = enrolled(1).await;
    let other = fixture_tpm("b");
    let refused = f.dps.register(tpm_request(&f, "tpm-device-1", &other, None)).await;
    assert!(matches!(&refused, Err(Error::Unauthorized(m)) if m.contains("endorsement key")), "{refused:?}");
    assert_eq!(f.store.get_tpm_challenge(f.scope(), "tpm-device-1").await.unwrap(), None, "nothing stored");
    // Nor does an unknown registration ID, with the enrolled EK.
    let unknown = f.dps.register(tpm_request(&f, "tpm-device-2", &fixture_tpm("a"), None)).await;
    assert!(matches!(unknown, Err(Error::Unauthorized(_))), "{unknown:?}");
}

#[tokio::test]
async fn an_enrolled_srk_must_match() {
    let f = Fixture::new(hubs(1)).await;
    let tpm = fixture_tpm("a");
    f.enroll(tpm_enrollment("tpm-device-1", &tpm, true)).await;
    let wrong_srk = TpmRegistration { storage_root_key: fixture_tpm("b").storage_root_key, ..tpm.clone() };
    let refused = f.dps.register(tpm_request(&f, "tpm-device-1", &wrong_srk, None)).await;
    assert!(matches!(&refused, Err(Error::Unauthorized(m)) if m.contains("storage root key")), "{refused:?}");
    assert_eq!(f.store.get_tpm_challenge(f.scope(), "tpm-device-1").await.unwrap(), None);
    // A signed register that swaps the SRK after the challenge is refused too.
    let (_, key) = challenge(&f, "tpm-device-1", &tpm).await;
    let token = device_token(f.scope(), "tpm-device-1", &key, later());
    let swapped = TpmRegistration { storage_root_key: tpm.endorsement_key.clone().into(), ..tpm.clone() };
    assert_refused(&f, tpm_request(&f, "tpm-device-1", &swapped, Some(token)), "not the one").await;
}

#[tokio::test]
async fn malformed_keys_are_clear_errors() {
    let f = enrolled(1).await;
    let tpm = fixture_tpm("a");
    let raw = B64.decode(&tpm.endorsement_key).unwrap();
    let cases = [
        ("not base64", "%%%".to_string(), "not base64"),
        ("truncated", B64.encode(&raw[..raw.len() - 10]), "truncated"),
        ("an SRK", tpm.storage_root_key.clone().unwrap(), "not an endorsement key"),
        ("oversized", "A".repeat(100_000), "larger than"),
    ];
    for (what, ek, expected) in cases {
        let bad = TpmRegistration { endorsement_key: ek, ..tpm.clone() };
        let refused = f.dps.register(tpm_request(&f, "tpm-device-1", &bad, None)).await;
        assert!(matches!(&refused, Err(Error::Invalid(m)) if m.contains(expected)), "{what}: {refused:?}");
    }
    let no_srk = TpmRegistration { storage_root_key: None, ..tpm };
    let refused = f.dps.register(tpm_request(&f, "tpm-device-1", &no_srk, None)).await;
    assert!(matches!(&refused, Err(Error::Invalid(m)) if m.contains("storageRootKey")), "{refused:?}");
    assert_eq!(f.store.get_tpm_challenge(f.scope(), "tpm-device-1").await.unwrap(), None);
}

#[tokio::test]
async fn enrollments_of_one_instance_do_not_admit_in_another() {
    let f = enrolled(1).await;
    let tpm = fixture_tpm("a");
    let other = add_instance(&f.dps, "dps-two", "dps-two.example.net", hubs(1)).await;
    let mut req = tpm_request(&f, "tpm-device-1", &tpm, None);
    req.caller.id_scope = other.id_scope.clone();
    let refused = f.dps.register(req).await;
    assert!(matches!(refused, Err(Error::Unauthorized(_))), "{refused:?}");
    assert_eq!(f.store.get_tpm_challenge(&other.id_scope, "tpm-device-1").await.unwrap(), None);
    // A key issued in the first instance signs nothing in the second.
    let (_, key) = challenge(&f, "tpm-device-1", &tpm).await;
    let mut req =
        tpm_request(&f, "tpm-device-1", &tpm, Some(device_token(&other.id_scope, "tpm-device-1", &key, later())));
    req.caller.id_scope = other.id_scope.clone();
    assert!(matches!(f.dps.register(req).await, Err(Error::Unauthorized(_))));
    assert_eq!(f.store.get_registration(&other.id_scope, "tpm-device-1").await.unwrap(), None);
}

#[tokio::test]
async fn tpm_enrollments_are_checked_and_kept() {
    let f = Fixture::new(hubs(1)).await;
    let tpm = fixture_tpm("a");
    let owner = f.owner().await;
    let bad: IndividualEnrollment = serde_json::from_value(json!({ "registrationId": "tpm-x",
        "attestation": { "type": "tpm", "tpm": { "endorsementKey": tpm.storage_root_key } } }))
    .unwrap();
    let refused = f.dps.put_enrollment(&owner, "tpm-x", bad, None).await;
    assert!(matches!(&refused, Err(Error::Invalid(m)) if m.contains("not an endorsement key")), "{refused:?}");
    assert_eq!(f.store.load::<IndividualEnrollment>(f.scope(), "tpm-x").await.unwrap(), None);

    f.enroll(tpm_enrollment("tpm-x", &tpm, true)).await;
    let mechanism = f.dps.enrollment_attestation::<IndividualEnrollment>(&owner, "tpm-x").await.unwrap();
    let got = mechanism.tpm.unwrap();
    assert_eq!(got.endorsement_key, tpm.endorsement_key);
    assert_eq!(got.storage_root_key, tpm.storage_root_key);
}

#[tokio::test]
async fn a_symmetric_key_token_does_not_open_a_tpm_enrollment() {
    let f = enrolled(1).await;
    let (_, key) = challenge(&f, "tpm-device-1", &fixture_tpm("a")).await;
    // Signed with the issued key but without the tpm body: the symmetric-key path, which a TPM enrollment refuses.
    let refused = f.register("tpm-device-1", &key).await;
    assert!(matches!(refused, Err(Error::Unauthorized(_))), "{refused:?}");
    assert_eq!(f.store.get_registration(f.scope(), "tpm-device-1").await.unwrap(), None);
}

/// Remembers the allocation requests and picks the first hub offered.
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<Value>>);

#[async_trait::async_trait]
impl dps_core::allocator::CustomAllocator for Recording {
    async fn check_definition(
        &self,
        _: &dps_core::model::Instance,
        _: &dps_core::model::CustomAllocationDefinition,
    ) -> dps_core::Result<()> {
        Ok(())
    }

    async fn allocate(
        &self,
        _: &dps_core::model::Instance,
        _: &dps_core::model::CustomAllocationDefinition,
        request: &dps_core::allocator::AllocationRequest,
    ) -> Result<dps_core::allocator::AllocationResponse, dps_core::allocator::AllocationFailure> {
        self.0.lock().unwrap().push(serde_json::to_value(request).unwrap());
        Ok(dps_core::allocator::AllocationResponse {
            iot_hub_host_name: request.linked_hubs[0].clone(),
            initial_twin: None,
            payload: Some(json!({ "seen": "tpm" })),
        })
    }
}

#[tokio::test]
async fn custom_allocation_sees_the_tpm() {
    let allocator = std::sync::Arc::new(Recording::default());
    let store: std::sync::Arc<dyn dps_core::store::Store> = std::sync::Arc::new(dps_core::memory::MemoryStore::new());
    let dps = dps_core::Dps::new(store.clone(), Settings::default()).with_allocator(allocator.clone());
    let instance = add_instance(&dps, "dps-custom", "dps-custom.example.net", hubs(2)).await;
    let f = Fixture { dps, store, instance };
    let tpm = fixture_tpm("a");
    let mut body = tpm_enrollment("tpm-device-1", &tpm, false);
    body["allocationPolicy"] = json!("custom");
    body["customAllocationDefinition"] =
        json!({ "webhookUrl": "https://alloc.example.net/api", "apiVersion": "2021-10-01" });
    f.enroll(body).await;
    let (_, key) = challenge(&f, "tpm-device-1", &tpm).await;
    let token = device_token(f.scope(), "tpm-device-1", &key, later());
    let record = f.dps.register(tpm_request(&f, "tpm-device-1", &tpm, Some(token))).await.unwrap();
    assert_eq!(record.payload, Some(json!({ "seen": "tpm" })));
    let request = allocator.0.lock().unwrap().last().cloned().unwrap();
    let context = &request["deviceRuntimeContext"];
    assert_eq!(context["tpm"]["endorsementKey"], tpm.endorsement_key.as_str());
    assert_eq!(context["tpm"]["storageRootKey"], tpm.storage_root_key.as_deref().unwrap());
    assert!(context.get("symmetricKey").is_none(), "{context}");
    assert_eq!(request["individualEnrollment"]["attestation"]["tpm"]["endorsementKey"], tpm.endorsement_key.as_str());
}
