//! Symmetric-key attestation: the device's SAS token, signed with its enrollment's key or with a key derived
//! from a group's.

use super::Dps;
use super::device::DEVICE_DENIED;
use super::groups::GroupSet;
use crate::error::{Error, Result};
use crate::model::{AnyEnrollment, AttestationType, EnrollmentSpec, Instance, ProvisioningStatus};
use crate::sas::SasToken;
use crate::store::DeviceContext;

impl Dps {
    /// Find the enrollment whose key signed the token. An individual enrollment takes precedence over
    /// groups; a disabled individual enrollment also disables a device that signs with a group key.
    pub(super) async fn attest_sas(
        &self,
        instance: &Instance,
        context: &DeviceContext,
        token: &SasToken,
        registration_id: &str,
    ) -> Result<AnyEnrollment> {
        let denied = || Error::unauthorized(DEVICE_DENIED);
        // Groups are loaded only when a group can decide: a device with an individual enrollment costs no group
        // list read unless that enrollment is disabled.
        if let Some(enrollment) = &context.enrollment {
            let admitted = signed_by_spec_keys(token, &enrollment.spec)
                || (enrollment.spec.provisioning_status == ProvisioningStatus::Disabled && {
                    let groups = self.groups(&instance.id_scope).await?;
                    self.group_that_signed(&groups, token, registration_id).is_some()
                });
            return if admitted { Ok(AnyEnrollment::Individual(enrollment.clone())) } else { Err(denied()) };
        }
        let groups = self.groups(&instance.id_scope).await?;
        // A device already admitted by a group is checked against that group first.
        if let Some(group_id) = context.record.as_ref().and_then(|r| r.enrollment_group_id.as_deref())
            && let Some(index) = groups.position(group_id)
            && signed_by_group(token, &groups, index, registration_id)
        {
            return Ok(AnyEnrollment::Group(groups[index].clone()));
        }
        let index = self.group_that_signed(&groups, token, registration_id).ok_or_else(denied)?;
        Ok(AnyEnrollment::Group(groups[index].clone()))
    }

    /// The first group (of those that cover the registration ID, at most `max_groups_tried`) whose derived key
    /// signed the token.
    fn group_that_signed(&self, groups: &GroupSet, token: &SasToken, registration_id: &str) -> Option<usize> {
        let mut tried = groups.symmetric_candidates(registration_id).take(self.settings.max_groups_tried);
        tried.find(|&index| signed_by_group(token, groups, index, registration_id))
    }
}

/// Whether `token` is signed with a key derived from the group at `index` for `registration_id`, and the group
/// covers that ID.
fn signed_by_group(token: &SasToken, groups: &GroupSet, index: usize, registration_id: &str) -> bool {
    groups[index].covers(registration_id)
        && groups.keys(index).iter().any(|key| token.signed_with_derived(key, registration_id))
}

/// Parse a device token and check its expiry and resource (`{scope}/registrations/{id}`, case-insensitive).
pub(super) fn device_token(
    authorization: Option<&str>,
    scope: &str,
    registration_id: &str,
    max_lifetime_secs: i64,
) -> Result<SasToken> {
    let header = authorization.ok_or_else(|| Error::unauthorized("Missing Authorization header"))?;
    let token = SasToken::parse(header)?;
    token.check_expiry(super::now().unix_timestamp(), max_lifetime_secs)?;
    let expected = format!("{scope}/registrations/{registration_id}");
    if !token.resource.eq_ignore_ascii_case(&expected) {
        return Err(Error::unauthorized("SAS token resource does not match this registration"));
    }
    Ok(token)
}

/// Whether `token` is signed with an individual enrollment's own symmetric keys (groups: [`signed_by_group`]).
fn signed_by_spec_keys(token: &SasToken, spec: &EnrollmentSpec) -> bool {
    let Some(keys) = spec.attestation.symmetric_key.as_ref() else {
        return false;
    };
    spec.attestation.kind == AttestationType::SymmetricKey
        && token.signed_with_any([keys.primary_key.as_deref(), keys.secondary_key.as_deref()].into_iter().flatten())
}
