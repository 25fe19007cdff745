//! X.509 attestation through the use cases: enrollments of certificates, the chain walk, CA certificates with
//! proof of possession, and every refusal leaving nothing recorded.

mod support;

use dps_attestation::testing::{self, KeyKind, TestCert};
use dps_core::Error;
use dps_core::model::{AttestationType, EnrollmentGroup, ProvisioningStatus, RegistrationRecord, RegistrationStatus};
use dps_core::usecases::{DeviceCaller, RegisterRequest};
use serde_json::json;
use support::{Fixture, hubs};

fn request(f: &Fixture, registration_id: &str, chain: &[&TestCert]) -> RegisterRequest {
    RegisterRequest {
        caller: DeviceCaller {
            id_scope: f.scope().to_string(),
            registration_id: registration_id.to_string(),
            body_registration_id: Some(registration_id.to_string()),
            client_certificates: chain.iter().map(|c| c.der.clone()).collect(),
            ..Default::default()
        },
        api_version: "2021-06-01".into(),
        ..Default::default()
    }
}

async fn register(f: &Fixture, registration_id: &str, chain: &[&TestCert]) -> dps_core::Result<RegistrationRecord> {
    f.dps.register(request(f, registration_id, chain)).await
}

async fn refused(f: &Fixture, registration_id: &str, chain: &[&TestCert]) -> String {
    match register(f, registration_id, chain).await {
        Err(Error::Unauthorized(message)) => {
            assert!(
                f.store.device_context(f.scope(), registration_id).await.unwrap().record.is_none(),
                "nothing recorded for a refused device"
            );
            message
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

fn individual(id: &str, cert: &str) -> serde_json::Value {
    json!({ "registrationId": id, "attestation": { "type": "x509",
        "x509": { "clientCertificates": { "primary": { "certificate": cert } } } } })
}

fn signing_group(id: &str, cert: &str) -> serde_json::Value {
    json!({ "enrollmentGroupId": id, "attestation": { "type": "x509",
        "x509": { "signingCertificates": { "primary": { "certificate": cert } } } } })
}

#[tokio::test]
async fn self_signed_individual_certificate_provisions() {
    for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048(0)] {
        let f = Fixture::new(hubs(2)).await;
        let device = testing::self_signed_device("device-01", kind);
        let stored = f.enroll(individual("device-01", &device.pem)).await;
        let info = stored.spec.attestation.x509.as_ref().unwrap().client_certificates.as_ref().unwrap();
        let info = info.primary.as_ref().unwrap().info.as_ref().unwrap();
        assert!(info.subject_name.as_deref().unwrap().contains("CN=device-01"));
        assert_eq!(info.version, Some(3));

        let record = register(&f, "device-01", &[&device]).await.unwrap();
        assert_eq!(record.status, RegistrationStatus::Assigned);
        assert_eq!(record.attestation_type, AttestationType::X509);
        let x509 = record.x509.unwrap();
        assert_eq!(x509.certificate_info.unwrap().sha256_thumbprint, info.sha256_thumbprint);
        assert_eq!(x509.enrollment_group_id, None);
    }
}

#[tokio::test]
async fn a_thumbprint_enrolls_a_device_too() {
    let f = Fixture::new(hubs(1)).await;
    let device = testing::self_signed_device("thumb-dev", KeyKind::EcdsaP256);
    let thumbprint = dps_attestation::x509::Certificate::from_der(&device.der).unwrap().info().sha1_thumbprint.clone();
    f.enroll(individual("thumb-dev", &thumbprint.to_lowercase())).await;
    assert_eq!(register(&f, "thumb-dev", &[&device]).await.unwrap().status, RegistrationStatus::Assigned);
    let before = f.store.device_context(f.scope(), "thumb-dev").await.unwrap().record;
    let other = testing::self_signed_device("thumb-dev", KeyKind::EcdsaP256);
    let err = register(&f, "thumb-dev", &[&other]).await.unwrap_err();
    assert!(matches!(&err, Error::Unauthorized(m) if m.contains("no enrollment")), "{err}");
    assert_eq!(f.store.device_context(f.scope(), "thumb-dev").await.unwrap().record, before, "record untouched");
}

#[tokio::test]
async fn signing_certificate_groups_admit_chains_of_one_to_three() {
    let f = Fixture::new(hubs(2)).await;
    let root = testing::root("root-ca", KeyKind::Rsa2048(1));
    let inter = root.intermediate("inter-ca", KeyKind::EcdsaP256);
    f.enroll_group(signing_group("by-root", &root.pem)).await;

    let direct = root.device("dev-direct", KeyKind::EcdsaP256);
    let record = register(&f, "dev-direct", &[&direct]).await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Assigned);
    assert_eq!(record.enrollment_group_id.as_deref(), Some("by-root"));
    let x509 = record.x509.unwrap();
    assert_eq!(x509.enrollment_group_id.as_deref(), Some("by-root"));
    assert!(x509.signing_certificate_info.unwrap().subject_name.unwrap().contains("root-ca"));

    let leaf = inter.device("dev-inter", KeyKind::Rsa2048(2));
    assert_eq!(register(&f, "dev-inter", &[&leaf, &inter]).await.unwrap().status, RegistrationStatus::Assigned);
    let full = inter.device("dev-full", KeyKind::EcdsaP256);
    assert_eq!(register(&f, "dev-full", &[&full, &inter, &root]).await.unwrap().status, RegistrationStatus::Assigned);
    // Without its intermediate the leaf does not reach the root.
    let alone = inter.device("dev-alone", KeyKind::EcdsaP256);
    assert!(refused(&f, "dev-alone", &[&alone]).await.contains("no enrollment"));
}

#[tokio::test]
async fn the_enrollment_nearest_the_leaf_decides() {
    let f = Fixture::new(hubs(2)).await;
    let root = testing::root("root-ca", KeyKind::EcdsaP256);
    let inter = root.intermediate("inter-ca", KeyKind::EcdsaP256);
    f.enroll_group(signing_group("a-root-group", &root.pem)).await;
    f.enroll_group(signing_group("b-inter-group", &inter.pem)).await;
    let leaf = inter.device("dev-1", KeyKind::EcdsaP256);
    let record = register(&f, "dev-1", &[&leaf, &inter, &root]).await.unwrap();
    assert_eq!(record.enrollment_group_id.as_deref(), Some("b-inter-group"));

    // A disabled nearest group refuses the device although the root's group is enabled.
    let mut group: EnrollmentGroup = serde_json::from_value(signing_group("b-inter-group", &inter.pem)).unwrap();
    group.spec.provisioning_status = ProvisioningStatus::Disabled;
    f.dps.put_enrollment(&f.owner().await, "b-inter-group", group, None).await.unwrap();
    let leaf2 = inter.device("dev-2", KeyKind::EcdsaP256);
    assert_eq!(register(&f, "dev-2", &[&leaf2, &inter]).await.unwrap().status, RegistrationStatus::Disabled);

    // A disabled individual enrollment refuses its device even under an enabled group.
    let leaf3 = root.device("dev-3", KeyKind::EcdsaP256);
    let mut body = individual("dev-3", &leaf3.pem);
    body["provisioningStatus"] = json!("disabled");
    f.enroll(body).await;
    assert_eq!(register(&f, "dev-3", &[&leaf3]).await.unwrap().status, RegistrationStatus::Disabled);
}

#[tokio::test]
async fn refusals_are_clear_and_record_nothing() {
    let f = Fixture::new(hubs(1)).await;
    let root = testing::root("root-ca", KeyKind::EcdsaP256);
    f.enroll_group(signing_group("group", &root.pem)).await;

    let expired = root.issue("dev-old", KeyKind::EcdsaP256, |p| {
        testing::device(p);
        testing::valid_days(-30, -1)(p)
    });
    assert!(refused(&f, "dev-old", &[&expired]).await.contains("expired"));
    let future = root.issue("dev-new", KeyKind::EcdsaP256, |p| {
        testing::device(p);
        testing::valid_days(2, 30)(p)
    });
    assert!(refused(&f, "dev-new", &[&future]).await.contains("not yet valid"));
    let stranger = testing::root("other-ca", KeyKind::EcdsaP256).device("dev-x", KeyKind::EcdsaP256);
    assert!(refused(&f, "dev-x", &[&stranger]).await.contains("no enrollment"));
    let leaf = root.device("dev-a", KeyKind::EcdsaP256);
    assert!(refused(&f, "dev-b", &[&leaf]).await.contains("does not match the registration ID"));
    let bad_cn = root.device("bad cn!", KeyKind::EcdsaP256);
    assert!(refused(&f, "dev-c", &[&bad_cn]).await.contains("not a valid registration ID"));
    let six: Vec<&TestCert> = std::iter::repeat_n(&leaf, 6).collect();
    assert!(refused(&f, "dev-a", &six).await.contains("too large"));
    let mut broken = leaf.der.clone();
    broken.truncate(broken.len() / 2);
    let mut req = request(&f, "dev-a", &[]);
    req.caller.client_certificates = vec![broken];
    assert!(matches!(f.dps.register(req).await, Err(Error::Unauthorized(m)) if m.contains("could not be read")));
    // A CA certificate is not a device certificate.
    let ca_leaf = root.intermediate("dev-ca", KeyKind::EcdsaP256);
    assert!(refused(&f, "dev-ca", &[&ca_leaf]).await.contains("CA certificate"));
}

#[tokio::test]
async fn a_certificate_of_one_instance_does_not_open_another() {
    let f = Fixture::new(hubs(1)).await;
    let other = support::add_instance(&f.dps, "dps-two", "dps-two.example.net", hubs(1)).await;
    let root = testing::root("root-ca", KeyKind::EcdsaP256);
    f.enroll_group(signing_group("group", &root.pem)).await;
    let leaf = root.device("dev-1", KeyKind::EcdsaP256);
    let mut req = request(&f, "dev-1", &[&leaf]);
    req.caller.id_scope = other.id_scope.clone();
    assert!(matches!(f.dps.register(req).await, Err(Error::Unauthorized(_))));
    assert!(f.store.device_context(&other.id_scope, "dev-1").await.unwrap().record.is_none());
}

#[tokio::test]
async fn enrollment_writes_check_certificates() {
    let f = Fixture::new(hubs(1)).await;
    let owner = f.owner().await;
    let leaf = testing::self_signed_device("dev", KeyKind::EcdsaP256);
    let put_group = |body: serde_json::Value| {
        let group: EnrollmentGroup = serde_json::from_value(body).unwrap();
        let (dps, owner) = (f.dps.clone(), owner.clone());
        async move { dps.put_enrollment(&owner, &group.enrollment_group_id.clone(), group, None).await }
    };
    // A group's signing certificate must be a CA.
    let err = put_group(signing_group("g", &leaf.pem)).await.unwrap_err();
    assert!(err.to_string().contains("must be a CA"), "{err}");
    let err = put_group(signing_group("g", "not a certificate")).await.unwrap_err();
    assert!(err.to_string().contains("signingCertificates.primary.certificate"), "{err}");
    let err = put_group(json!({ "enrollmentGroupId": "g", "attestation": { "type": "x509",
        "x509": { "caReferences": { "primary": "missing-ca" } } } }))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("no CA certificate named 'missing-ca'"), "{err}");
    let err = put_group(json!({ "enrollmentGroupId": "g", "attestation": { "type": "x509",
        "x509": { "clientCertificates": { "primary": { "certificate": leaf.pem } } } } }))
    .await
    .unwrap_err();
    assert!(err.to_string().contains("signingCertificates or caReferences"), "{err}");
}

#[tokio::test]
async fn verified_ca_certificates_admit_their_groups() {
    let (f, events) = Fixture::new(hubs(1)).await.recording();
    let owner = f.owner().await;
    let ca = testing::root("fleet-ca", KeyKind::Rsa2048(0));
    let uploaded = f.dps.put_ca_certificate(&owner, "fleet", &ca.pem).await.unwrap();
    assert!(!uploaded.is_verified);
    let code = uploaded.verification_code.clone().unwrap();
    f.enroll_group(json!({ "enrollmentGroupId": "fleet-group", "attestation": { "type": "x509",
        "x509": { "caReferences": { "primary": "fleet" } } } }))
        .await;
    let leaf = ca.device("dev-1", KeyKind::EcdsaP256);
    assert!(refused(&f, "dev-1", &[&leaf]).await.contains("no enrollment"), "an unverified CA admits nobody");

    // Proof of possession: the CN must be the code, and the CA must have signed it.
    let wrong_cn = ca.device("not-the-code", KeyKind::EcdsaP256);
    assert!(f.dps.verify_ca_certificate(&owner, "fleet", &wrong_cn.pem).await.is_err());
    let forged = testing::root("other", KeyKind::EcdsaP256).device(&code, KeyKind::EcdsaP256);
    assert!(f.dps.verify_ca_certificate(&owner, "fleet", &forged.pem).await.is_err());
    let proof = ca.device(&code, KeyKind::EcdsaP256);
    let verified = f.dps.verify_ca_certificate(&owner, "fleet", &proof.pem).await.unwrap();
    assert!(verified.is_verified);
    assert_eq!(verified.verification_code, None);
    // Verifying again changes nothing: one event, naming the CA and not carrying its certificate.
    f.dps.verify_ca_certificate(&owner, "fleet", &proof.pem).await.unwrap();
    let told: Vec<_> = events.take().into_iter().filter(|e| e["type"] == "dps.caCertificate.verified").collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["subject"], "certificates/fleet");
    assert_eq!(told[0]["data"]["sha256Thumbprint"], json!(verified.info.sha256_thumbprint));

    let record = register(&f, "dev-1", &[&leaf]).await.unwrap();
    assert_eq!(record.status, RegistrationStatus::Assigned);
    assert_eq!(record.enrollment_group_id.as_deref(), Some("fleet-group"));

    // A referenced CA cannot be deleted; once unreferenced it can.
    let err = f.dps.delete_ca_certificate(&owner, "fleet").await.unwrap_err();
    assert!(matches!(&err, Error::Conflict(m) if m.contains("fleet-group")), "{err}");
    f.dps.delete_enrollment::<EnrollmentGroup>(&owner, "fleet-group", None).await.unwrap();
    f.dps.delete_ca_certificate(&owner, "fleet").await.unwrap();
    assert!(matches!(f.dps.get_ca_certificate(&owner, "fleet").await, Err(Error::NotFound(_))));
    // Only CA certificates are accepted.
    assert!(f.dps.put_ca_certificate(&owner, "leaf", &leaf.pem).await.is_err());
}
