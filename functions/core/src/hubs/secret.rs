//! Sealing connector credentials at rest.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Error, Result};

/// Keeps connector credentials sealed at rest: the store only ever holds what [`SecretBox::seal`] returned.
#[async_trait]
pub trait SecretBox: Send + Sync {
    /// Seal `plaintext` (the result is printable ASCII, safe to store in a JSON document).
    async fn seal(&self, plaintext: &str) -> Result<String>;
    /// Open what `seal` returned.
    async fn open(&self, sealed: &str) -> Result<String>;
}

/// Prefix of what [`KeySecretBox`] seals: the scheme, so that another one can follow.
const PREFIX: &str = "aes256gcm:";

/// AES-256-GCM under one 256-bit key from configuration (the local binary keeps it in its data dir): a fresh
/// random 96-bit nonce per seal, stored as `aes256gcm:` + base64(nonce || ciphertext || tag).
pub struct KeySecretBox {
    cipher: Aes256Gcm,
}

impl KeySecretBox {
    /// A box over `key` (32 bytes).
    pub fn new(key: &[u8; 32]) -> Self {
        Self { cipher: Aes256Gcm::new(key.into()) }
    }

    /// A fresh random key.
    pub fn generate_key() -> [u8; 32] {
        rand::random()
    }
}

#[async_trait]
impl SecretBox for KeySecretBox {
    async fn seal(&self, plaintext: &str) -> Result<String> {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .map_err(|_| Error::internal("cannot seal credentials"))?;
        Ok(format!("{PREFIX}{}", STANDARD.encode([nonce.as_slice(), &sealed].concat())))
    }

    async fn open(&self, sealed: &str) -> Result<String> {
        let refused = || Error::internal("stored hub credentials cannot be opened with this deployment's key");
        let bytes = sealed.strip_prefix(PREFIX).and_then(|b| STANDARD.decode(b).ok()).ok_or_else(refused)?;
        if bytes.len() < 12 + 16 {
            return Err(refused());
        }
        let (nonce, body) = bytes.split_at(12);
        let plain = self.cipher.decrypt(Nonce::from_slice(nonce), body).map_err(|_| refused())?;
        String::from_utf8(plain).map_err(|_| refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn seals_and_opens_and_refuses_tampering() {
        let sealer = KeySecretBox::new(&KeySecretBox::generate_key());
        let sealed = sealer.seal("HostName=h;SharedAccessKey=secret").await.unwrap();
        assert!(!sealed.contains("secret"));
        assert_ne!(sealed, sealer.seal("HostName=h;SharedAccessKey=secret").await.unwrap(), "fresh nonce");
        assert_eq!(sealer.open(&sealed).await.unwrap(), "HostName=h;SharedAccessKey=secret");
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(sealer.open(std::str::from_utf8(&tampered).unwrap()).await.is_err());
        let other = KeySecretBox::new(&KeySecretBox::generate_key());
        let err = other.open(&sealed).await.unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
