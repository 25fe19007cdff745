//! Shared access signatures: parsing, signing and verifying tokens, and deriving group device keys.
//!
//! The HMAC is computed over `sr` exactly as it appears in the token (clients differ in how they encode it),
//! and the resource is compared separately, percent-decoded and case-insensitively.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use sha2::Sha256;

use crate::error::{Error, Result};

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted (a real one is under 300 bytes).
const MAX_TOKEN_LEN: usize = 2048;

/// A parsed `SharedAccessSignature` token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    /// `sr` exactly as sent (what the signature covers).
    pub resource_raw: String,
    /// `sr` percent-decoded.
    pub resource: String,
    /// Signature bytes.
    pub signature: Vec<u8>,
    /// Expiry, Unix seconds.
    pub expiry: i64,
    /// `se` exactly as sent (what the signature covers, with any leading zeros or sign).
    pub expiry_raw: String,
    /// Key name (`skn`), if present.
    pub key_name: Option<String>,
}

impl SasToken {
    /// Parse an `Authorization` header value (`SharedAccessSignature sr=...&sig=...&se=...[&skn=...]`).
    pub fn parse(header: &str) -> Result<Self> {
        let bad = |why: &str| Error::unauthorized(format!("Invalid SAS token: {why}"));
        if header.len() > MAX_TOKEN_LEN {
            return Err(bad("too long"));
        }
        let rest = header
            .trim()
            .strip_prefix("SharedAccessSignature")
            .ok_or_else(|| bad("expected the SharedAccessSignature scheme"))?
            .trim_start();
        let (mut sr, mut sig, mut se, mut skn) = (None, None, None, None);
        for part in rest.split('&') {
            let (k, v) = part.split_once('=').ok_or_else(|| bad("malformed field"))?;
            let slot = match k.trim() {
                "sr" => &mut sr,
                "sig" => &mut sig,
                "se" => &mut se,
                "skn" => &mut skn,
                _ => continue,
            };
            if slot.replace(v.to_string()).is_some() {
                return Err(bad("repeated field"));
            }
        }
        let resource_raw = sr.ok_or_else(|| bad("missing sr"))?;
        let resource =
            percent_decode_str(&resource_raw).decode_utf8().map_err(|_| bad("sr is not UTF-8"))?.into_owned();
        let sig = sig.ok_or_else(|| bad("missing sig"))?;
        let sig = percent_decode_str(&sig).decode_utf8().map_err(|_| bad("sig is not UTF-8"))?;
        let signature = B64.decode(sig.as_bytes()).map_err(|_| bad("sig is not base64"))?;
        let expiry_raw = se.ok_or_else(|| bad("missing se"))?;
        let expiry = expiry_raw.parse::<i64>().map_err(|_| bad("se is not a number"))?;
        let key_name = skn
            .map(|s| percent_decode_str(&s).decode_utf8().map(|c| c.into_owned()))
            .transpose()
            .map_err(|_| bad("skn is not UTF-8"))?;
        Ok(Self { resource_raw, resource, signature, expiry, expiry_raw: expiry_raw.to_string(), key_name })
    }

    /// Check expiry against `now` (Unix seconds): not passed, and not further ahead than `max_lifetime_secs`
    /// (a token that never expires cannot be revoked by rotating nothing but time).
    pub fn check_expiry(&self, now: i64, max_lifetime_secs: i64) -> Result<()> {
        if self.expiry <= now {
            return Err(Error::unauthorized("SAS token has expired"));
        }
        if self.expiry > now.saturating_add(max_lifetime_secs) {
            return Err(Error::unauthorized(format!(
                "SAS token expires too far ahead: at most {max_lifetime_secs} seconds from now are accepted"
            )));
        }
        Ok(())
    }

    /// Whether the signature was made with `key` (raw bytes), compared in constant time.
    pub fn signed_with(&self, key: &[u8]) -> bool {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(self.resource_raw.as_bytes());
        mac.update(b"\n");
        mac.update(self.expiry_raw.as_bytes());
        // Constant-time comparison (hmac's verify).
        mac.verify_slice(&self.signature).is_ok()
    }

    /// Whether the signature was made with the device key `group` derives for `registration_id`.
    pub fn signed_with_derived(&self, group: &GroupKey, registration_id: &str) -> bool {
        self.signed_with(&group.derive(registration_id))
    }

    /// Whether the signature was made with one of the base64 `keys`.
    pub fn signed_with_any<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> bool {
        keys.into_iter().filter_map(|k| B64.decode(k).ok()).any(|k| self.signed_with(&k))
    }
}

/// HMAC-SHA256 of `resource + "\n" + expiry` with `key`.
pub fn sign(key: &[u8], resource: &str, expiry: i64) -> Vec<u8> {
    sign_raw(key, resource, &expiry.to_string())
}

/// HMAC-SHA256 of `resource + "\n" + expiry` with `key`, the expiry as the token carries it.
fn sign_raw(key: &[u8], resource: &str, expiry: &str) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(resource.as_bytes());
    mac.update(b"\n");
    mac.update(expiry.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// A complete token string for `resource` signed with the base64 `key` (used by tools and tests).
pub fn token(resource: &str, key_b64: &str, expiry: i64, key_name: Option<&str>) -> Result<String> {
    let key = B64.decode(key_b64).map_err(|_| Error::invalid("key is not base64"))?;
    let sr = percent_encoding::utf8_percent_encode(resource, percent_encoding::NON_ALPHANUMERIC).to_string();
    let sig = B64.encode(sign(&key, &sr, expiry));
    let sig = percent_encoding::utf8_percent_encode(&sig, percent_encoding::NON_ALPHANUMERIC);
    let mut out = format!("SharedAccessSignature sr={sr}&sig={sig}&se={expiry}");
    if let Some(name) = key_name {
        out.push_str("&skn=");
        out.push_str(name);
    }
    Ok(out)
}

/// A group device key: base64(HMAC-SHA256(base64decode(group_key), registration_id)).
pub fn derive_device_key(group_key_b64: &str, registration_id: &str) -> Result<String> {
    let key = B64.decode(group_key_b64).map_err(|_| Error::invalid("group key is not base64"))?;
    let mut mac = HmacSha256::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(registration_id.as_bytes());
    Ok(B64.encode(mac.finalize().into_bytes()))
}

/// A group key with its HMAC key schedule done once (kept with the cached group list): deriving a device key
/// is then one update and finalisation, with no base64 and no allocation.
#[derive(Clone)]
pub struct GroupKey(HmacSha256);

impl GroupKey {
    /// Prepare a base64 group key (`None` if it is not base64).
    pub fn new(group_key_b64: &str) -> Option<Self> {
        let key = B64.decode(group_key_b64).ok()?;
        Some(Self(HmacSha256::new_from_slice(&key).expect("HMAC takes any key length")))
    }

    /// The device key for `registration_id` (raw bytes; [`derive_device_key`] is its base64).
    pub fn derive(&self, registration_id: &str) -> [u8; 32] {
        let mut mac = self.0.clone();
        mac.update(registration_id.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// A fresh 64-byte key, base64, as Azure generates them.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 64];
    rand::fill(&mut bytes[..]);
    B64.encode(bytes)
}

/// Check a symmetric key supplied by a caller: base64 of 16 to 64 bytes.
pub fn validate_key(key: &str) -> Result<()> {
    let bytes = B64.decode(key).map_err(|_| Error::invalid("symmetric key is not valid base64"))?;
    if !(16..=64).contains(&bytes.len()) {
        return Err(Error::invalid("symmetric key must be 16 to 64 bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_key_matches_the_documented_vector() {
        let group = "8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==";
        let key = derive_device_key(group, "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6").unwrap();
        assert_eq!(key, "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc=");
    }

    #[test]
    fn signature_covers_sr_as_sent_whatever_its_encoding() {
        let key = generate_key();
        let raw = B64.decode(&key).unwrap();
        for sr in [
            "0ne00000001/registrations/dev-1",
            "0ne00000001%2Fregistrations%2Fdev-1",
            "0ne00000001%2fregistrations%2fdev-1",
        ] {
            let sig = B64.encode(sign(&raw, sr, 2_000_000_000));
            let header =
                format!("SharedAccessSignature sr={sr}&sig={}&se=2000000000&skn=registration", urlencode(&sig));
            let token = SasToken::parse(&header).unwrap();
            assert!(token.signed_with(&raw), "{sr}");
            assert_eq!(token.resource.to_ascii_lowercase(), "0ne00000001/registrations/dev-1");
            assert!(!token.signed_with(&B64.decode(generate_key()).unwrap()));
        }
    }

    #[test]
    fn fields_in_any_order_and_expiry_checked() {
        let t = SasToken::parse("SharedAccessSignature se=100&skn=registration&sig=AAAA&sr=a%2Fb").unwrap();
        assert_eq!(t.resource, "a/b");
        assert_eq!(t.key_name.as_deref(), Some("registration"));
        assert!(t.check_expiry(99, 3600).is_ok());
        assert!(matches!(t.check_expiry(100, 3600), Err(Error::Unauthorized(_))));
        assert!(matches!(t.check_expiry(0, 99), Err(Error::Unauthorized(_))), "beyond the maximum lifetime");
    }

    #[test]
    fn malformed_tokens_are_unauthorized() {
        for bad in [
            "Bearer abc",
            "SharedAccessSignature sr=a&sig=%%%&se=1",
            "SharedAccessSignature sr=a&se=1",
            "SharedAccessSignature sr=a&sig=AAAA&se=soon",
            "SharedAccessSignature sr=a&sr=b&sig=AAAA&se=1",
        ] {
            assert!(matches!(SasToken::parse(bad), Err(Error::Unauthorized(_))), "{bad}");
        }
    }

    #[test]
    fn key_validation_bounds() {
        assert!(validate_key(&generate_key()).is_ok());
        assert!(validate_key(&B64.encode([0u8; 15])).is_err());
        assert!(validate_key(&B64.encode([0u8; 65])).is_err());
        assert!(validate_key("not base64!").is_err());
    }

    fn urlencode(s: &str) -> String {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    }
}
