//! TPM challenges: one per device, conditional writes, expiry on read, scoped and case-insensitive.

use super::*;
use crate::model::TpmChallenge;
use crate::store::unix_now;

fn challenge(registration_id: &str, expires_in: i64) -> TpmChallenge {
    TpmChallenge {
        registration_id: registration_id.to_string(),
        key: "aXNzdWVkLWtleS0xMjM0NTY3ODkwMTIzNDU2Nzg5MDEy".into(),
        endorsement_key_sha256: "ab".repeat(32),
        storage_root_key_sha256: "cd".repeat(32),
        authentication_key: "AAAA".repeat(150),
        expires_at: unix_now() + expires_in,
        consumed: false,
        etag: None,
    }
}

/// Write, read back as written, replace, and consume with the etag (once: a second consumer with the same etag
/// loses, which is what makes a challenge single-use).
pub async fn tpm_challenge_put_get_consume(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let sc = scope();
    assert_eq!(s.get_tpm_challenge(&sc, "tpm-dev").await.unwrap(), None);
    let first = s.put_tpm_challenge(&sc, challenge("TPM-Dev", 600), Precondition::None).await.unwrap();
    let etag = first.etag.clone().expect("the store sets an etag");
    let read = s.get_tpm_challenge(&sc, "tpm-DEV").await.unwrap().expect("keys are case-insensitive");
    assert_eq!(read, first, "read back as written, original case kept");

    let conflict = s.put_tpm_challenge(&sc, challenge("tpm-dev", 600), Precondition::NotExists).await;
    assert!(matches!(conflict, Err(Error::Conflict(_))), "{conflict:?}");

    let consumed = TpmChallenge { consumed: true, ..read.clone() };
    let won = s.put_tpm_challenge(&sc, consumed.clone(), Precondition::Matches(etag.clone())).await.unwrap();
    assert!(won.consumed);
    assert_ne!(won.etag.as_deref(), Some(etag.as_str()), "every write sets a fresh etag");
    let replay = s.put_tpm_challenge(&sc, consumed, Precondition::Matches(etag)).await;
    assert!(matches!(replay, Err(Error::PreconditionFailed(_))), "a second consumer loses: {replay:?}");
    assert!(s.get_tpm_challenge(&sc, "tpm-dev").await.unwrap().unwrap().consumed);

    // A new challenge replaces the device's old one.
    let fresh = s.put_tpm_challenge(&sc, challenge("tpm-dev", 600), Precondition::None).await.unwrap();
    assert_eq!(s.get_tpm_challenge(&sc, "tpm-dev").await.unwrap(), Some(fresh));
}

/// An expired challenge reads as absent and cannot be consumed, and a new one may take its place.
pub async fn tpm_challenge_expires(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let sc = scope();
    let stale = s.put_tpm_challenge(&sc, challenge("tpm-old", -1), Precondition::None).await.unwrap();
    assert_eq!(s.get_tpm_challenge(&sc, "tpm-old").await.unwrap(), None, "expired reads as absent");
    let consume = TpmChallenge { consumed: true, ..stale.clone() };
    let late = s.put_tpm_challenge(&sc, consume, Precondition::Matches(stale.etag.clone().unwrap())).await;
    assert!(matches!(late, Err(Error::NotFound(_))), "an expired challenge cannot be consumed: {late:?}");
    s.put_tpm_challenge(&sc, challenge("tpm-old", 600), Precondition::NotExists)
        .await
        .expect("an expired challenge does not block a new one");
    assert!(s.get_tpm_challenge(&sc, "tpm-old").await.unwrap().is_some());
}

/// A challenge of one scope is invisible through another, and leaves the device's other items alone.
pub async fn tpm_challenge_scoped(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (a, b) = (scope(), scope());
    s.save(&a, IndividualEnrollment::make("tpm-dev", "a"), Precondition::NotExists).await.unwrap();
    s.put_registration(&a, sample_record("tpm-dev", None), Precondition::NotExists.into()).await.unwrap();
    s.put_tpm_challenge(&a, challenge("tpm-dev", 600), Precondition::None).await.unwrap();
    assert_eq!(s.get_tpm_challenge(&b, "tpm-dev").await.unwrap(), None);
    let context = s.device_context(&a, "tpm-dev").await.unwrap();
    assert!(context.enrollment.is_some() && context.record.is_some(), "the device's context is unchanged");
    assert_eq!(s.get_registration(&a, "tpm-dev").await.unwrap().unwrap().registration_id, "tpm-dev");
}
