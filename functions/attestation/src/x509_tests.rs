use super::*;
use crate::testing::{self, KeyKind};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn chain(certs: &[&testing::TestCert]) -> Chain {
    Chain::from_der(&certs.iter().map(|c| c.der.clone()).collect::<Vec<_>>()).unwrap()
}

#[test]
fn info_is_what_azure_shows() {
    let cert = testing::self_signed_device("device-01", KeyKind::EcdsaP256);
    let parsed = Certificate::from_text(&cert.pem).unwrap();
    let info = parsed.info();
    assert!(info.subject_name.contains("CN=device-01"), "{}", info.subject_name);
    assert_eq!(info.subject_name, info.issuer_name);
    assert_eq!(info.sha1_thumbprint.len(), 40);
    assert_eq!(info.sha256_thumbprint.len(), 64);
    assert!(info.sha256_thumbprint.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    assert_eq!(info.version, 3);
    assert!(info.not_before < now() && now() < info.not_after);
    assert_eq!(parsed.common_name(), Some("device-01"));
    assert!(!parsed.is_ca());
    assert!(parsed.has_thumbprint(&info.sha1_thumbprint.to_lowercase()));
    assert!(parsed.has_thumbprint(&info.sha256_thumbprint));
    assert!(!parsed.has_thumbprint("00"));
}

#[test]
fn names_are_written_most_specific_first_as_azure_writes_them() {
    let cert = testing::self_signed("device-01", KeyKind::EcdsaP256, |params| {
        let mut name = rcgen::DistinguishedName::new();
        name.push(rcgen::DnType::CountryName, "US");
        name.push(rcgen::DnType::OrganizationName, "Contoso");
        name.push(rcgen::DnType::OrganizationalUnitName, "Azure IoT");
        name.push(rcgen::DnType::CommonName, "device-01");
        params.distinguished_name = name;
        testing::device(params);
    });
    let info = Certificate::from_text(&cert.pem).unwrap().info().clone();
    assert_eq!(info.subject_name, "CN=device-01, OU=Azure IoT, O=Contoso, C=US");
    assert_eq!(info.issuer_name, info.subject_name);
}

#[test]
fn certificate_text_in_each_accepted_form() {
    let cert = testing::self_signed_device("d", KeyKind::EcdsaP256);
    let from_pem = Certificate::from_text(&cert.pem).unwrap();
    let from_b64_pem = Certificate::from_text(&B64.encode(cert.pem.as_bytes())).unwrap();
    let from_b64_der = Certificate::from_text(&B64.encode(&cert.der)).unwrap();
    assert_eq!(from_pem, from_b64_pem);
    assert_eq!(from_pem, from_b64_der);
    for bad in ["", "not base64 !", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "AAAA"] {
        assert!(matches!(Certificate::from_text(bad), Err(X509Error::Malformed(_))), "{bad}");
    }
    assert!(matches!(Certificate::from_text(&"A".repeat(40_000)), Err(X509Error::TooLarge(_))));
}

#[test]
fn chains_of_one_to_three_verify_for_both_key_kinds() {
    for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048(0)] {
        let root = testing::root("root", kind);
        let direct = root.device("dev-a", kind);
        chain(&[&direct]).verify_to(&Certificate::from_der(&root.der).unwrap(), now()).unwrap();
        let inter = root.intermediate("inter", KeyKind::Rsa2048(1));
        let leaf = inter.device("dev-b", kind);
        let presented = chain(&[&leaf, &inter]);
        // Trusted at the root (the intermediate comes from the device) or at the intermediate itself.
        presented.verify_to(&Certificate::from_der(&root.der).unwrap(), now()).unwrap();
        presented.verify_to(&Certificate::from_der(&inter.der).unwrap(), now()).unwrap();
        // The root presented too (length 3) changes nothing.
        chain(&[&leaf, &inter, &root]).verify_to(&Certificate::from_der(&root.der).unwrap(), now()).unwrap();
    }
}

#[test]
fn refusals_name_the_reason() {
    let kind = KeyKind::EcdsaP256;
    let root = testing::root("root", kind);
    let anchor = Certificate::from_der(&root.der).unwrap();
    let other = testing::root("other", kind);

    let stranger = other.device("dev", kind);
    assert_eq!(
        chain(&[&stranger]).verify_to(&anchor, now()),
        Err(X509Error::Chain("it does not chain to the enrollment's certificate".into()))
    );
    let expired = root.issue("dev", kind, |p| {
        testing::device(p);
        testing::valid_days(-10, -1)(p)
    });
    assert_eq!(chain(&[&expired]).verify_to(&anchor, now()), Err(X509Error::NotValidNow));
    let future = root.issue("dev", kind, |p| {
        testing::device(p);
        testing::valid_days(1, 10)(p)
    });
    assert_eq!(chain(&[&future]).verify_to(&anchor, now()), Err(X509Error::NotValidNow));
    let server_only = root.issue("dev", kind, |p| {
        testing::device(p);
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    });
    assert!(
        matches!(chain(&[&server_only]).verify_to(&anchor, now()), Err(X509Error::Chain(m)) if m.contains("client"))
    );
    let ca_leaf = root.intermediate("dev", kind);
    assert!(matches!(chain(&[&ca_leaf]).verify_to(&anchor, now()), Err(X509Error::Chain(m)) if m.contains("CA")));
    // An intermediate that is not a CA cannot sign devices.
    let not_ca = root.device("not-ca", kind);
    let under_not_ca = not_ca.device("dev", kind);
    assert!(chain(&[&under_not_ca, &not_ca]).verify_to(&anchor, now()).is_err());
    // Path length: an intermediate that allows no CA below it (webpki keeps no constraints of the trust anchor
    // itself, so the rule is tested where it binds: inside the presented chain).
    let strict = root.issue("strict", kind, |p| {
        testing::ca(p);
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    });
    let inter = strict.intermediate("inter", kind);
    let leaf = inter.device("dev", kind);
    assert_eq!(
        chain(&[&leaf, &inter, &strict]).verify_to(&anchor, now()),
        Err(X509Error::Chain("the chain breaks a path length constraint".into()))
    );
    // A tampered signature.
    let mut tampered = root.device("dev", kind).der;
    let at = tampered.len() - 3;
    tampered[at] ^= 0x55;
    let tampered = Chain::from_der(&[tampered]).unwrap();
    assert!(tampered.verify_to(&anchor, now()).is_err());
}

#[test]
fn chain_bounds() {
    let root = testing::root("root", KeyKind::EcdsaP256);
    let leaf = root.device("dev", KeyKind::EcdsaP256);
    let six: Vec<Vec<u8>> = (0..6).map(|_| leaf.der.clone()).collect();
    assert!(matches!(Chain::from_der(&six), Err(X509Error::TooLarge(_))));
    assert!(matches!(Chain::from_der::<Vec<u8>>(&[]), Err(X509Error::Malformed(_))));
    assert!(matches!(Chain::from_der(&[vec![0u8; 9000]]), Err(X509Error::TooLarge(_))));
    assert!(matches!(Chain::from_der(&[vec![0x30, 0x03, 1, 2, 3]]), Err(X509Error::Malformed(_))));
    let pem = format!("{}{}", leaf.pem, root.pem);
    let parsed = Chain::from_pem(pem.as_bytes()).unwrap();
    assert_eq!(parsed.certificates().len(), 2);
    assert_eq!(parsed.leaf().common_name(), Some("dev"));
    assert!(Certificate::from_der(&root.der).unwrap().issued(parsed.leaf()));
    assert!(Chain::from_pem(b"garbage").is_err());
    assert!(Chain::from_pem(pem.repeat(3).as_bytes()).is_err(), "six certificates");
}
