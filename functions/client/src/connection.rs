//! Connection strings (`HostName=...;SharedAccessKeyName=...;SharedAccessKey=...`) and the service SAS tokens
//! signed with them.

use std::fmt;

use crate::Error;

/// A shared access policy of one instance: the service host name that routes to it, the policy name and its key.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    /// The instance's service host name (the server routes service API calls by `Host`).
    pub host_name: String,
    /// The shared access policy's name (`skn`).
    pub key_name: String,
    /// The policy's key, base64.
    pub key: String,
}

impl ConnectionString {
    /// Parse `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` (any order; other parts ignored).
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (mut host, mut name, mut key) = (None, None, None);
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            // Keys end in '=' padding: split at the first '=' only.
            let Some((k, v)) = part.split_once('=') else {
                return Err(Error::usage(format!(
                    "malformed connection string part '{}': expected Name=value",
                    part.chars().take(20).collect::<String>()
                )));
            };
            let v = v.trim().to_string();
            match k.trim() {
                "HostName" => host = Some(v),
                "SharedAccessKeyName" => name = Some(v),
                "SharedAccessKey" => key = Some(v),
                _ => {}
            }
        }
        match (host, name, key) {
            (Some(host_name), Some(key_name), Some(key)) if !host_name.is_empty() && !key.is_empty() => {
                Ok(Self { host_name, key_name, key })
            }
            _ => Err(Error::usage(
                "the connection string needs HostName, SharedAccessKeyName and SharedAccessKey \
                 (`dps instance show default` prints one for the local server)",
            )),
        }
    }

    /// A `SharedAccessSignature ...` Authorization value for the whole host, valid until `expiry` (Unix seconds).
    pub fn token(&self, expiry: i64) -> Result<String, Error> {
        dps_core::sas::token(&self.host_name.to_ascii_lowercase(), &self.key, expiry, Some(&self.key_name))
            .map_err(|e| Error::usage(format!("cannot sign with the connection string's key: {e}")))
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HostName={};SharedAccessKeyName={};SharedAccessKey={}", self.host_name, self.key_name, self.key)
    }
}

/// Never prints the key.
impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_in_any_order_keep_key_padding() {
        let c =
            ConnectionString::parse("SharedAccessKey=abc==; HostName=dps.example;SharedAccessKeyName=owner;").unwrap();
        assert_eq!((c.host_name.as_str(), c.key_name.as_str(), c.key.as_str()), ("dps.example", "owner", "abc=="));
        assert_eq!(ConnectionString::parse(&c.to_string()).unwrap(), c);
        assert!(!format!("{c:?}").contains("abc=="), "Debug hides the key");
    }

    #[test]
    fn incomplete_strings_are_usage_errors() {
        for bad in ["HostName=x", "HostName=x;SharedAccessKeyName=y", "garbage", ""] {
            let err = ConnectionString::parse(bad).unwrap_err();
            assert_eq!(err.kind, crate::ErrorKind::Usage, "{bad}");
        }
    }

    #[test]
    fn tokens_verify_with_the_key() {
        let key = "a2V5LWtleS1rZXkta2V5LWtleQ==";
        let c = ConnectionString::parse(&format!("HostName=DPS.example;SharedAccessKeyName=o;SharedAccessKey={key}"))
            .unwrap();
        let token = dps_core::sas::SasToken::parse(&c.token(4_000_000_000).unwrap()).unwrap();
        assert_eq!(token.resource, "dps.example");
        assert!(token.signed_with_any([key]));
    }
}
