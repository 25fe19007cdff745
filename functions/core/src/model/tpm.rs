//! TPM attestation entities: what a device sends, what it is told, and the challenge state kept between its two
//! register calls.

use serde::{Deserialize, Serialize};

/// The `tpm` part of a device's register request: its EK and SRK public areas (base64 `TPM2B_PUBLIC`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmRegistration {
    /// The endorsement key.
    pub endorsement_key: String,
    /// The storage root key the issued key is duplicated to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_root_key: Option<String>,
}

/// The `tpm` part of a TPM device's registration result (`registrationState.tpm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmRegistrationResult {
    /// The key blob the device imports into its TPM (base64; only that TPM can open it).
    pub authentication_key: String,
}

/// The key issued to one device's TPM by its challenge (the 401 that answers a register without Authorization),
/// kept until `expires_at`: the device's next register must be signed with it, once.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmChallenge {
    /// The device's registration ID (case-insensitive key).
    pub registration_id: String,
    /// The issued HMAC-SHA256 key, base64. Secret: never logged, never returned by the service API.
    pub key: String,
    /// SHA-256 (hex) of the EK `TPM2B_PUBLIC` the key was issued to.
    pub endorsement_key_sha256: String,
    /// SHA-256 (hex) of the SRK `TPM2B_PUBLIC` the key was duplicated to.
    pub storage_root_key_sha256: String,
    /// The `authenticationKey` blob sent to the device (base64), given again in `registrationState.tpm`.
    pub authentication_key: String,
    /// Unix seconds after which the challenge is void (stores read it as absent; DynamoDB's TTL removes it).
    pub expires_at: i64,
    /// Set once a registration signed with the key has been accepted: it cannot be replayed.
    #[serde(default)]
    pub consumed: bool,
    /// Version tag, set by the store on every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

impl TpmChallenge {
    /// Whether the challenge is void at `now` (Unix seconds).
    pub fn expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

impl std::fmt::Debug for TpmChallenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpmChallenge")
            .field("registration_id", &self.registration_id)
            .field("expires_at", &self.expires_at)
            .field("consumed", &self.consumed)
            .field("etag", &self.etag)
            .finish_non_exhaustive()
    }
}
