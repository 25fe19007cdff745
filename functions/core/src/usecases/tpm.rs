//! TPM attestation: the endorsement-key challenge of the Azure protocol.
//!
//! A TPM device registers twice. First without Authorization, with `tpm: {endorsementKey, storageRootKey}`: if
//! its individual enrollment names that EK, the service issues a fresh HMAC key wrapped so that only that TPM can
//! use it (`dps_attestation::tpm`), keeps it as the device's [`TpmChallenge`] until it expires, and answers 401
//! with the `authenticationKey` ([`Error::TpmChallenge`]). Then with a SAS token signed by the TPM with that key:
//! the challenge is consumed (a conditional write, so a replay loses) and the registration proceeds as any other.
//! Status lookups of a TPM device are signed with the same key, until the challenge expires.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use dps_attestation::tpm::{self, RsaStorageKey};
use sha2::{Digest, Sha256};

use super::device::RegisterRequest;
use super::sas_attestation::device_token;
use super::{Dps, now};
use crate::error::{Error, Result};
use crate::model::{
    AttestationType, IndividualEnrollment, RegistrationRecord, TpmAttestation, TpmChallenge, TpmRegistration,
    TpmRegistrationResult,
};
use crate::sas::SasToken;
use crate::store::{DeviceContext, Precondition};

/// Longest base64 EK or SRK accepted: a `TPM2B_PUBLIC` of at most `MAX_PUBLIC_SIZE` bytes, encoded.
const MAX_PUBLIC_BASE64: usize = (tpm::MAX_PUBLIC_SIZE + 2).div_ceil(3) * 4;

/// The answer to a TPM whose EK no enrollment of the scope names (the same whether the ID or the EK is wrong).
const TPM_DENIED: &str = "Unauthorized: the TPM endorsement key does not match any enrollment";

const NO_CHALLENGE: &str =
    "Unauthorized: no TPM challenge is pending for this device, or it expired; register without Authorization first";

const REPLAYED: &str =
    "Unauthorized: this TPM challenge was already used; register without Authorization for a new one";

/// The TPM a device presents, parsed and checked.
pub(super) struct DeviceTpm {
    ek: RsaStorageKey,
    srk: RsaStorageKey,
    ek_sha256: String,
    srk_sha256: String,
}

impl DeviceTpm {
    fn parse(request: &TpmRegistration) -> Result<Self> {
        let ek_bytes = decode_public("tpm.endorsementKey", &request.endorsement_key)?;
        let ek = RsaStorageKey::parse_endorsement_key(&ek_bytes)
            .map_err(|e| Error::invalid(format!("tpm.endorsementKey: {e}")))?;
        let srk = request
            .storage_root_key
            .as_deref()
            .ok_or_else(|| Error::invalid("tpm.storageRootKey is required: the issued key is imported under it"))?;
        let srk_bytes = decode_public("tpm.storageRootKey", srk)?;
        let srk = RsaStorageKey::parse_storage_root_key(&srk_bytes)
            .map_err(|e| Error::invalid(format!("tpm.storageRootKey: {e}")))?;
        Ok(Self { ek, srk, ek_sha256: sha256_hex(&ek_bytes), srk_sha256: sha256_hex(&srk_bytes) })
    }
}

fn decode_public(field: &str, base64: &str) -> Result<Vec<u8>> {
    if base64.len() > MAX_PUBLIC_BASE64 {
        return Err(Error::invalid(format!(
            "{field} is larger than any TPM2B_PUBLIC ({MAX_PUBLIC_BASE64} characters)"
        )));
    }
    B64.decode(base64.trim()).map_err(|_| Error::invalid(format!("{field} is not base64")))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The rules of an enrollment's TPM attestation: an EK of the TCG template, and an SRK if one is named.
pub(super) fn check_tpm_attestation(attestation: Option<&TpmAttestation>) -> Result<()> {
    let attestation = attestation
        .filter(|t| !t.endorsement_key.is_empty())
        .ok_or_else(|| Error::invalid("TPM attestation requires an endorsementKey"))?;
    let ek = decode_public("endorsementKey", &attestation.endorsement_key)?;
    RsaStorageKey::parse_endorsement_key(&ek).map_err(|e| Error::invalid(format!("endorsementKey: {e}")))?;
    if let Some(srk) = &attestation.storage_root_key {
        let srk = decode_public("storageRootKey", srk)?;
        RsaStorageKey::parse_storage_root_key(&srk).map_err(|e| Error::invalid(format!("storageRootKey: {e}")))?;
    }
    Ok(())
}

impl Dps {
    /// A register call that carries `tpm`: the challenge when it has no Authorization, else the registration
    /// signed with the key the challenge issued.
    pub(super) async fn register_tpm(
        &self,
        req: &RegisterRequest,
        request: &TpmRegistration,
    ) -> Result<RegistrationRecord> {
        req.caller.check_ids()?;
        let device = DeviceTpm::parse(request)?;
        match req.caller.authorization {
            None => Err(self.tpm_challenge(req, &device).await?),
            Some(_) => self.register_tpm_signed(req, &device).await,
        }
    }

    /// Issue a key to the device's TPM and keep it as its challenge; the answer is the 401 to send.
    async fn tpm_challenge(&self, req: &RegisterRequest, device: &DeviceTpm) -> Result<Error> {
        let instance = self.device_instance(&req.caller.id_scope).await?;
        let context = self.store.device_context(&instance.id_scope, &req.caller.registration_id).await?;
        enrolled(&context, device)?;
        let issued = tpm::issue(&device.ek, &device.srk).map_err(|e| Error::invalid(format!("TPM: {e}")))?;
        let authentication_key = B64.encode(&issued.authentication_key);
        let ttl = i64::try_from(self.settings.tpm_challenge_ttl.as_secs()).unwrap_or(i64::MAX);
        let challenge = TpmChallenge {
            registration_id: req.caller.registration_id.clone(),
            key: B64.encode(issued.key),
            endorsement_key_sha256: device.ek_sha256.clone(),
            storage_root_key_sha256: device.srk_sha256.clone(),
            authentication_key: authentication_key.clone(),
            expires_at: now().unix_timestamp().saturating_add(ttl),
            consumed: false,
            etag: None,
        };
        self.store.put_tpm_challenge(&instance.id_scope, challenge, Precondition::None).await?;
        tracing::info!(scope = %instance.id_scope, registration_id = %req.caller.registration_id, "tpm challenge issued");
        Ok(Error::TpmChallenge { authentication_key })
    }

    async fn register_tpm_signed(&self, req: &RegisterRequest, device: &DeviceTpm) -> Result<RegistrationRecord> {
        let token = device_token(
            req.caller.authorization.as_deref(),
            &req.caller.id_scope,
            &req.caller.registration_id,
            self.settings.max_token_secs(),
        )?;
        let instance = self.device_instance(&req.caller.id_scope).await?;
        let scope = instance.id_scope.clone();
        let challenge = self.signed_challenge(&scope, &req.caller.registration_id, &token).await?;
        if challenge.endorsement_key_sha256 != device.ek_sha256
            || challenge.storage_root_key_sha256 != device.srk_sha256
        {
            return Err(Error::unauthorized(
                "Unauthorized: the TPM in this request is not the one the challenge was issued to",
            ));
        }
        if challenge.consumed {
            return Err(Error::unauthorized(REPLAYED));
        }
        // Consume before recording: of two requests signed with one key, exactly one gets past this write.
        let etag = challenge.etag.clone().unwrap_or_default();
        let result = TpmRegistrationResult { authentication_key: challenge.authentication_key.clone() };
        let device_key = challenge.key.clone();
        let consumed = TpmChallenge { consumed: true, ..challenge };
        match self.store.put_tpm_challenge(&scope, consumed, Precondition::Matches(etag)).await {
            Ok(_) => {}
            Err(Error::PreconditionFailed(_)) => return Err(Error::unauthorized(REPLAYED)),
            Err(Error::NotFound(_)) => return Err(Error::unauthorized(NO_CHALLENGE)),
            Err(other) => return Err(other),
        }
        let admission = super::provision::Admission::Tpm(device, &result, &device_key);
        self.write_registration(&instance, req, admission).await
    }

    /// The device's live challenge, if `token` is signed with its key.
    pub(super) async fn signed_challenge(
        &self,
        scope: &str,
        registration_id: &str,
        token: &SasToken,
    ) -> Result<TpmChallenge> {
        let challenge = self
            .store
            .get_tpm_challenge(scope, registration_id)
            .await?
            .filter(|c| !c.expired(now().unix_timestamp()))
            .ok_or_else(|| Error::unauthorized(NO_CHALLENGE))?;
        if !token.signed_with_any([challenge.key.as_str()]) {
            return Err(Error::unauthorized(
                "Unauthorized: the SAS token is not signed with the key issued to this TPM",
            ));
        }
        Ok(challenge)
    }
}

/// The device's individual enrollment, if it is a TPM enrollment naming this EK (and this SRK, if it names one).
pub(super) fn enrolled<'a>(context: &'a DeviceContext, device: &DeviceTpm) -> Result<&'a IndividualEnrollment> {
    let denied = || Error::unauthorized(TPM_DENIED);
    let enrollment = context.enrollment.as_ref().ok_or_else(denied)?;
    let attestation = &enrollment.spec.attestation;
    let tpm = attestation.tpm.as_ref().filter(|_| attestation.kind == AttestationType::Tpm).ok_or_else(denied)?;
    // Enrollments are checked when written; one that no longer parses admits nobody.
    let parse = |b64: &str, ek: bool| {
        let bytes = B64.decode(b64.trim()).ok()?;
        if ek { RsaStorageKey::parse_endorsement_key(&bytes).ok() } else { RsaStorageKey::parse(&bytes).ok() }
    };
    let enrolled_ek = parse(&tpm.endorsement_key, true).ok_or_else(denied)?;
    if !enrolled_ek.same_key(&device.ek) {
        return Err(denied());
    }
    if let Some(srk) = &tpm.storage_root_key {
        let enrolled_srk = parse(srk, false).ok_or_else(denied)?;
        if !enrolled_srk.same_key(&device.srk) {
            return Err(Error::unauthorized("Unauthorized: the storage root key does not match the enrollment"));
        }
    }
    Ok(enrollment)
}
