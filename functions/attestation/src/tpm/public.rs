//! `TPM2B_PUBLIC`: parsing what a device sends (its EK and SRK), the checks that make a key usable as one, and
//! Names (`nameAlg || H(TPMT_PUBLIC)`).

use sha2::{Digest, Sha256};

use super::TpmError;
use super::marshal::{Reader, Writer};

/// `TPM_ALG_*` identifiers this module knows.
pub(crate) mod alg {
    pub const RSA: u16 = 0x0001;
    pub const HMAC: u16 = 0x0005;
    pub const AES: u16 = 0x0006;
    pub const KEYEDHASH: u16 = 0x0008;
    pub const SHA256: u16 = 0x000B;
    pub const NULL: u16 = 0x0010;
    pub const ECC: u16 = 0x0023;
    pub const CFB: u16 = 0x0043;
}

/// `TPMA_OBJECT` bits.
pub(crate) mod attr {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub const NO_DA: u32 = 1 << 10;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;
}

/// Largest `TPM2B_PUBLIC` accepted (an RSA-4096 key with a SHA-512 policy is about 600 bytes).
pub const MAX_PUBLIC_SIZE: usize = 1024;

/// The policy of the TCG EK templates L-1 (RSA 2048) and L-2 (ECC P-256): `PolicySecret(TPM_RH_ENDORSEMENT)`.
const EK_POLICY_SHA256: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7,
    0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// AES key size of a storage key's symmetric algorithm (always CFB mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AesBits {
    /// AES-128-CFB.
    Aes128,
    /// AES-256-CFB.
    Aes256,
}

impl AesBits {
    /// The key size in bits.
    pub fn bits(self) -> u32 {
        match self {
            AesBits::Aes128 => 128,
            AesBits::Aes256 => 256,
        }
    }
}

/// An RSA storage key (a restricted decryption key with a symmetric algorithm): what an EK or SRK must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaStorageKey {
    /// The marshalled `TPMT_PUBLIC` (without the `TPM2B` size), which its Name hashes.
    tpmt: Vec<u8>,
    attributes: u32,
    auth_policy: Vec<u8>,
    symmetric: AesBits,
    key_bits: u16,
    exponent: u32,
    modulus: Vec<u8>,
}

impl RsaStorageKey {
    /// Parse a `TPM2B_PUBLIC` that must describe an RSA storage key with nameAlg SHA-256 (a restricted
    /// decryption key with AES-CFB, the shape of TCG EK and SRK templates). ECC keys are refused as unsupported.
    pub fn parse(tpm2b: &[u8]) -> Result<Self, TpmError> {
        if tpm2b.len() > MAX_PUBLIC_SIZE + 2 {
            return Err(TpmError::TooLarge("TPM2B_PUBLIC"));
        }
        let mut outer = Reader::new(tpm2b);
        let tpmt = outer.sized(MAX_PUBLIC_SIZE, "TPM2B_PUBLIC")?;
        outer.finish("TPM2B_PUBLIC")?;
        if tpmt.is_empty() {
            return Err(TpmError::Truncated("TPM2B_PUBLIC"));
        }

        let mut r = Reader::new(tpmt);
        let object_type = r.u16("TPMT_PUBLIC.type")?;
        match object_type {
            alg::RSA => {}
            alg::ECC => return Err(TpmError::Unsupported("ECC keys (only RSA endorsement and storage keys)")),
            _ => return Err(TpmError::Unsupported("key type (only RSA endorsement and storage keys)")),
        }
        if r.u16("TPMT_PUBLIC.nameAlg")? != alg::SHA256 {
            return Err(TpmError::Unsupported("nameAlg (only SHA-256)"));
        }
        let attributes = r.u32("TPMT_PUBLIC.objectAttributes")?;
        let auth_policy = r.sized(64, "TPMT_PUBLIC.authPolicy")?.to_vec();
        // TPMS_RSA_PARMS: symmetric, scheme, keyBits, exponent.
        let symmetric = match r.u16("TPMS_RSA_PARMS.symmetric")? {
            alg::AES => {
                let bits = r.u16("TPMS_RSA_PARMS.symmetric.keyBits")?;
                let mode = r.u16("TPMS_RSA_PARMS.symmetric.mode")?;
                if mode != alg::CFB {
                    return Err(TpmError::NotStorageKey("its symmetric mode is not CFB"));
                }
                match bits {
                    128 => AesBits::Aes128,
                    256 => AesBits::Aes256,
                    _ => return Err(TpmError::Unsupported("AES key size (only 128 and 256)")),
                }
            }
            alg::NULL => return Err(TpmError::NotStorageKey("it has no symmetric algorithm")),
            _ => return Err(TpmError::Unsupported("symmetric algorithm (only AES-CFB)")),
        };
        if r.u16("TPMS_RSA_PARMS.scheme")? != alg::NULL {
            return Err(TpmError::NotStorageKey("it has an RSA scheme (a storage key has none)"));
        }
        let key_bits = r.u16("TPMS_RSA_PARMS.keyBits")?;
        if !matches!(key_bits, 2048 | 3072 | 4096) {
            return Err(TpmError::Unsupported("RSA key size (only 2048, 3072 and 4096 bits)"));
        }
        let exponent = r.u32("TPMS_RSA_PARMS.exponent")?;
        let modulus = r.sized(512, "TPMT_PUBLIC.unique.rsa")?.to_vec();
        r.finish("TPMT_PUBLIC")?;
        if modulus.len() != usize::from(key_bits / 8) {
            return Err(TpmError::Malformed("the RSA modulus does not have keyBits bits"));
        }
        let storage = attr::RESTRICTED | attr::DECRYPT;
        if attributes & storage != storage || attributes & attr::SIGN != 0 {
            return Err(TpmError::NotStorageKey("it is not a restricted decryption key"));
        }
        Ok(Self { tpmt: r.consumed().to_vec(), attributes, auth_policy, symmetric, key_bits, exponent, modulus })
    }

    /// Parse, and check that the key has the shape of a TCG endorsement key template (L-1: RSA 2048, AES-128-CFB,
    /// fixedTPM, fixedParent, adminWithPolicy, no userWithAuth, the endorsement-hierarchy policy). The `unique`
    /// field of the template (empty, or 256 zero bytes) is not visible in the key, so both forms pass.
    pub fn parse_endorsement_key(tpm2b: &[u8]) -> Result<Self, TpmError> {
        let key = Self::parse(tpm2b)?;
        let required = attr::FIXED_TPM | attr::FIXED_PARENT | attr::SENSITIVE_DATA_ORIGIN | attr::ADMIN_WITH_POLICY;
        if key.attributes & required != required {
            return Err(TpmError::NotEndorsementKey(
                "fixedTPM, fixedParent, sensitiveDataOrigin or adminWithPolicy is clear",
            ));
        }
        if key.attributes & attr::USER_WITH_AUTH != 0 {
            return Err(TpmError::NotEndorsementKey("userWithAuth is set"));
        }
        if key.auth_policy != EK_POLICY_SHA256 {
            return Err(TpmError::NotEndorsementKey("its authPolicy is not the TCG endorsement policy"));
        }
        if key.key_bits != 2048 || key.symmetric != AesBits::Aes128 {
            return Err(TpmError::NotEndorsementKey("it is not RSA-2048 with AES-128-CFB"));
        }
        Ok(key)
    }

    /// Parse, and check that the key can be a parent that imports (fixedTPM and fixedParent, as every SRK).
    pub fn parse_storage_root_key(tpm2b: &[u8]) -> Result<Self, TpmError> {
        let key = Self::parse(tpm2b)?;
        let required = attr::FIXED_TPM | attr::FIXED_PARENT;
        if key.attributes & required != required {
            return Err(TpmError::NotStorageKey("fixedTPM or fixedParent is clear"));
        }
        Ok(key)
    }

    /// The key's Name: `TPM_ALG_SHA256 || SHA-256(TPMT_PUBLIC)`.
    pub fn name(&self) -> Vec<u8> {
        name_sha256(&self.tpmt)
    }

    /// The RSA public key (modulus, and the exponent with 0 meaning 65537).
    pub fn public_key(&self) -> (&[u8], u32) {
        (&self.modulus, if self.exponent == 0 { 65537 } else { self.exponent })
    }

    /// The symmetric algorithm of the key (used to protect credentials and duplicates sent to it).
    pub fn symmetric(&self) -> AesBits {
        self.symmetric
    }

    /// Whether two keys are the same RSA key (same modulus and exponent), whatever their other fields.
    pub fn same_key(&self, other: &Self) -> bool {
        self.public_key() == other.public_key()
    }
}

/// `TPM_ALG_SHA256 || SHA-256(bytes)`: the Name of an object whose marshalled `TPMT_PUBLIC` is `tpmt`.
pub(crate) fn name_sha256(tpmt: &[u8]) -> Vec<u8> {
    let mut name = alg::SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&Sha256::digest(tpmt));
    name
}

/// The `TPMT_PUBLIC` of an HMAC-SHA256 keyed-hash key (signing, user auth with an empty password, no dictionary
/// attack lockout, duplicable) whose `unique` is `SHA-256(seed || key)` as the TPM checks on import.
pub(crate) fn hmac_key_public(unique: &[u8; 32]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u16(alg::KEYEDHASH)
        .u16(alg::SHA256)
        .u32(attr::USER_WITH_AUTH | attr::NO_DA | attr::SIGN)
        .sized(&[])
        .u16(alg::HMAC)
        .u16(alg::SHA256)
        .sized(unique);
    w.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TPM2B_PUBLIC of an RSA key with the given attributes, policy and modulus length.
    pub(crate) fn rsa_public(attributes: u32, policy: &[u8], modulus_len: usize) -> Vec<u8> {
        let mut w = Writer::default();
        w.u16(alg::RSA).u16(alg::SHA256).u32(attributes).sized(policy);
        w.u16(alg::AES).u16(128).u16(alg::CFB).u16(alg::NULL).u16(2048).u32(0);
        w.sized(&vec![0xa5; modulus_len]);
        super::super::marshal::sized(&w.into_bytes())
    }

    const EK_ATTRS: u32 = 0x0003_00b2;
    const SRK_ATTRS: u32 = 0x0003_0472;

    #[test]
    fn endorsement_key_template_is_recognised() {
        let ek = rsa_public(EK_ATTRS, &EK_POLICY_SHA256, 256);
        let key = RsaStorageKey::parse_endorsement_key(&ek).unwrap();
        assert_eq!(key.public_key(), (&[0xa5; 256][..], 65537));
        assert_eq!(key.name()[..2], [0x00, 0x0b]);
        assert_eq!(key.name().len(), 34);
    }

    #[test]
    fn an_srk_is_not_an_endorsement_key() {
        let srk = rsa_public(SRK_ATTRS, &[], 256);
        assert!(RsaStorageKey::parse_storage_root_key(&srk).is_ok());
        assert!(matches!(RsaStorageKey::parse_endorsement_key(&srk), Err(TpmError::NotEndorsementKey(_))));
        let no_policy = rsa_public(EK_ATTRS, &[], 256);
        assert!(matches!(RsaStorageKey::parse_endorsement_key(&no_policy), Err(TpmError::NotEndorsementKey(_))));
    }

    #[test]
    fn signing_keys_and_bad_sizes_are_refused() {
        let signing = rsa_public(attr::SIGN | attr::FIXED_TPM | attr::FIXED_PARENT, &[], 256);
        assert!(matches!(RsaStorageKey::parse(&signing), Err(TpmError::NotStorageKey(_))));
        let short = rsa_public(SRK_ATTRS, &[], 200);
        assert!(matches!(RsaStorageKey::parse(&short), Err(TpmError::Malformed(_))));
        let mut trailing = rsa_public(SRK_ATTRS, &[], 256);
        trailing.push(0);
        assert_eq!(RsaStorageKey::parse(&trailing), Err(TpmError::TrailingBytes("TPM2B_PUBLIC")));
        assert!(matches!(RsaStorageKey::parse(&vec![0xff; 4096]), Err(TpmError::TooLarge(_))));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let ek = rsa_public(EK_ATTRS, &EK_POLICY_SHA256, 256);
        for len in 0..ek.len() {
            assert!(RsaStorageKey::parse(&ek[..len]).is_err(), "prefix of {len} bytes parsed");
        }
        // A TPM2B size that claims more than its TPMT holds, with the rest of the blob well-formed.
        let mut lying = ek.clone();
        lying[1] = lying[1].wrapping_sub(1);
        assert!(RsaStorageKey::parse(&lying).is_err());
    }

    #[test]
    fn ecc_keys_are_unsupported() {
        let mut w = Writer::default();
        w.u16(alg::ECC).u16(alg::SHA256).u32(EK_ATTRS).sized(&EK_POLICY_SHA256);
        let ecc = super::super::marshal::sized(&w.into_bytes());
        assert!(matches!(RsaStorageKey::parse(&ecc), Err(TpmError::Unsupported(_))));
    }
}
