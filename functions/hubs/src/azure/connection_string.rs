//! The hub's connection string, and the SAS tokens signed with it as the official service SDKs sign them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;

/// `encodeURIComponent` plus `!'()*`: the SDKs' `encodeUriComponentStrict`, used for `sr`, `sig` and `skn`.
const STRICT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encoded as the SDKs encode token fields.
pub(crate) fn encode_strict(text: &str) -> String {
    utf8_percent_encode(text, STRICT).to_string()
}

/// `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` of a shared access policy with registry write
/// rights (for example `registryReadWrite` or `iothubowner`).
pub(crate) struct ConnectionString {
    pub host_name: String,
    pub key_name: String,
    /// The key as written (base64): only to scrub it from messages.
    pub key_text: String,
    key: Vec<u8>,
}

impl ConnectionString {
    /// Parse; the error says what is wrong without repeating the key.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (mut host_name, mut key_name, mut key_text) = (None, None, None);
        for part in text.trim().split(';').filter(|p| !p.trim().is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err("the hub's connection string has a part without '=' (expected Name=value;...)".into());
            };
            let value = value.trim().to_owned();
            match name.trim() {
                "HostName" => host_name = Some(value),
                "SharedAccessKeyName" => key_name = Some(value),
                "SharedAccessKey" => key_text = Some(value),
                "DeviceId" | "ModuleId" => {
                    return Err("this is a device connection string; link the hub with the connection string of \
                                a shared access policy with registry write rights"
                        .into());
                }
                _ => {}
            }
        }
        let missing = |what: &str| format!("the hub's connection string has no {what}");
        let host_name = host_name.filter(|h| !h.is_empty()).ok_or_else(|| missing("HostName"))?;
        let key_name = key_name.filter(|k| !k.is_empty()).ok_or_else(|| missing("SharedAccessKeyName"))?;
        let key_text = key_text.filter(|k| !k.is_empty()).ok_or_else(|| missing("SharedAccessKey"))?;
        if host_name.contains(['/', '@', ' ', '?', '#']) {
            return Err("the hub's connection string has a HostName that is not a host name".into());
        }
        let key = STANDARD
            .decode(&key_text)
            .map_err(|_| "the hub's connection string has a SharedAccessKey that is not base64".to_owned())?;
        Ok(Self { host_name, key_name, key_text, key })
    }

    /// A hub SAS token valid until `expiry` (Unix seconds): `sr` is the URL-encoded host name and `sig` the
    /// HMAC-SHA256, under the decoded key, of `sr` as sent, a newline and `se`.
    pub fn token(&self, expiry: u64) -> String {
        let sr = encode_strict(&self.host_name);
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(format!("{sr}\n{expiry}").as_bytes());
        let sig = STANDARD.encode(mac.finalize().into_bytes());
        format!(
            "SharedAccessSignature sr={sr}&sig={}&se={expiry}&skn={}",
            encode_strict(&sig),
            encode_strict(&self.key_name)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "b3JhY2xlLWh1Yi10ZXN0LWtleS1ub3QtYS1zZWNyZXQ=";

    #[test]
    fn parses_and_explains_what_is_wrong_without_the_key() {
        let cs = ConnectionString::parse(&format!(
            "HostName=hub.azure-devices.net;SharedAccessKeyName=registryReadWrite;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!((cs.host_name.as_str(), cs.key_name.as_str()), ("hub.azure-devices.net", "registryReadWrite"));
        for (text, expected) in [
            ("SharedAccessKeyName=a;SharedAccessKey=AAAA", "no HostName"),
            ("HostName=h;SharedAccessKey=AAAA", "no SharedAccessKeyName"),
            ("HostName=h;SharedAccessKeyName=a", "no SharedAccessKey"),
            ("HostName=h;DeviceId=d;SharedAccessKey=AAAA", "device connection string"),
            ("HostName=h;SharedAccessKeyName=a;SharedAccessKey=not*base64!", "not base64"),
            ("HostName=h/x;SharedAccessKeyName=a;SharedAccessKey=AAAA", "not a host name"),
            ("garbage", "without '='"),
        ] {
            let err = ConnectionString::parse(text).err().unwrap_or_else(|| panic!("{text} parsed"));
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains("AAAA") && !err.contains("base64!"), "{err}");
        }
    }

    /// The token the Python SDK sent in the oracle (tests/hubs/azure/fixtures/python.json), recomputed.
    #[test]
    fn signs_as_the_service_sdks_do() {
        let cs = ConnectionString::parse(&format!(
            "HostName=oracle-hub.azure-devices.net;SharedAccessKeyName=registryReadWrite;SharedAccessKey={KEY}"
        ))
        .unwrap();
        assert_eq!(
            cs.token(1796146978),
            "SharedAccessSignature sr=oracle-hub.azure-devices.net&sig=h331cr%2FqxKqCaRM2PMIIzt6UImh6orEp3B84Nw9vJVc%3D\
             &se=1796146978&skn=registryReadWrite"
        );
    }
}
