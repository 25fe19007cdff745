use super::*;
use crate::testing::{KeyKind, WEAK_RSA_CSR, csr};

#[test]
fn accepts_p256_and_rsa_2048_csrs_for_the_registration_id() {
    let (der, _) = csr("device-01", KeyKind::EcdsaP256);
    let info = check_csr(&der, "device-01").unwrap();
    assert_eq!(
        (info.common_name.as_str(), info.key, info.der.as_slice()),
        ("device-01", CsrKey::EcP256, der.as_slice())
    );
    assert!(!info.public_key_info.is_empty());

    let (der, _) = csr("device-02", KeyKind::Rsa2048(0));
    assert_eq!(check_csr(&der, "device-02").unwrap().key, CsrKey::Rsa(2048));
}

#[test]
fn accepts_p384_and_pem_and_ignores_ascii_case_of_the_common_name() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "Device-03");
    let request = params.serialize_request(&key).unwrap();
    let pem = request.pem().unwrap();
    let info = check_csr(pem.as_bytes(), "device-03").unwrap();
    assert_eq!((info.key, info.der.as_slice()), (CsrKey::EcP384, request.der().as_ref()));
}

#[test]
fn refuses_a_csr_for_another_registration_id() {
    let (der, _) = csr("device-01", KeyKind::EcdsaP256);
    let err = check_csr(&der, "device-02").unwrap_err();
    assert_eq!(err, CsrError::WrongCommonName { found: "device-01".into(), expected: "device-02".into() });
    assert_eq!(err.to_string(), "The CSR's subject common name 'device-01' is not the registration ID 'device-02'");
}

#[test]
fn refuses_a_csr_without_common_name() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::OrganizationName, "no CN");
    let der = params.serialize_request(&key).unwrap().der().to_vec();
    assert_eq!(check_csr(&der, "device-01"), Err(CsrError::NoCommonName));
}

#[test]
fn refuses_weak_and_unsupported_keys() {
    assert_eq!(check_csr(WEAK_RSA_CSR, "weak-device"), Err(CsrError::WeakRsaKey(1024)));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "device-01");
    let der = params.serialize_request(&key).unwrap().der().to_vec();
    assert_eq!(check_csr(&der, "device-01"), Err(CsrError::UnsupportedKey("Ed25519".into())));
}

#[test]
fn refuses_garbage_oversized_and_trailing_bytes() {
    assert_eq!(check_csr(b"not a csr at all", "device-01"), Err(CsrError::Malformed));
    assert_eq!(
        check_csr(b"-----BEGIN CERTIFICATE REQUEST-----\n!!\n-----END CERTIFICATE REQUEST-----\n", "d"),
        Err(CsrError::Malformed)
    );
    assert_eq!(check_csr(&[], "device-01"), Err(CsrError::Malformed));
    let big = vec![0x30; MAX_CSR_BYTES + 1];
    assert_eq!(check_csr(&big, "device-01"), Err(CsrError::TooLarge(MAX_CSR_BYTES + 1)));
    let (mut der, _) = csr("device-01", KeyKind::EcdsaP256);
    der.push(0);
    assert_eq!(check_csr(&der, "device-01"), Err(CsrError::TrailingBytes));
    let cert_der = crate::testing::self_signed_device("device-01", KeyKind::EcdsaP256).der;
    assert_eq!(check_csr(&cert_der, "device-01"), Err(CsrError::Malformed), "a certificate is not a CSR");
}

#[test]
fn refuses_a_bad_signature() {
    let (mut der, _) = csr("device-01", KeyKind::EcdsaP256);
    // The signature is the last element: flip a bit in its final byte (an ECDSA signature's s value).
    *der.last_mut().unwrap() ^= 0x01;
    assert_eq!(check_csr(&der, "device-01"), Err(CsrError::BadSignature));
    // A signature over other request info: the subject changed after signing.
    let (good, _) = csr("device-0a", KeyKind::Rsa2048(1));
    let tampered: Vec<u8> = {
        let at = good.windows(9).position(|w| w == b"device-0a").unwrap();
        let mut t = good.clone();
        t[at + 8] = b'b';
        t
    };
    assert_eq!(check_csr(&tampered, "device-0b"), Err(CsrError::BadSignature));
}
