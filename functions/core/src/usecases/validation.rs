//! The rules an enrollment (either kind) must meet before it is stored, and the keys it is given.

use super::Dps;
use crate::error::{Error, Result};
use crate::ids::{printable, validate_host_name};
use crate::model::{
    AllocationPolicy, AttestationMechanism, AttestationType, EnrollmentSpec, Instance, SymmetricKeyAttestation,
};
use crate::sas::{generate_key, validate_key};

impl Dps {
    pub(super) async fn check_spec(&self, instance: &Instance, spec: &EnrollmentSpec) -> Result<()> {
        let attestation = &spec.attestation;
        match attestation.kind {
            AttestationType::SymmetricKey => {
                if let Some(keys) = &attestation.symmetric_key {
                    for key in [&keys.primary_key, &keys.secondary_key].into_iter().flatten() {
                        validate_key(key)?;
                    }
                }
            }
            AttestationType::Tpm => super::tpm::check_tpm_attestation(attestation.tpm.as_ref())?,
            AttestationType::X509 => {
                if attestation.x509.is_none() {
                    return Err(Error::invalid("X.509 attestation requires certificates"));
                }
            }
            AttestationType::None => {
                return Err(Error::invalid("An attestation mechanism is required"));
            }
        }
        let linked = |host: &str| instance.linked_hubs.iter().any(|h| h.host_name.eq_ignore_ascii_case(host));
        let mut seen = std::collections::HashSet::new();
        for hub in spec.iot_hubs.iter().flatten() {
            if !seen.insert(hub.to_ascii_lowercase()) {
                return Err(Error::invalid(format!("IoT hub '{}' appears more than once in iotHubs", printable(hub))));
            }
        }
        for hub in spec.iot_hubs.iter().flatten().chain(spec.iot_hub_host_name.iter()) {
            validate_host_name(hub)?;
            if !linked(hub) {
                return Err(Error::invalid(format!("IoT hub '{hub}' is not linked to this provisioning service")));
            }
        }
        if let Some(twin) = &spec.initial_twin
            && !twin.is_object()
        {
            return Err(Error::invalid("initialTwin must be an object"));
        }
        match spec.allocation_policy {
            Some(AllocationPolicy::Static) => {
                let named = spec.iot_hub_host_name.is_some() || spec.iot_hubs.as_ref().is_some_and(|h| h.len() == 1);
                if !named {
                    return Err(Error::invalid(
                        "The static policy requires iotHubHostName or exactly one iotHubs entry",
                    ));
                }
            }
            Some(AllocationPolicy::Custom)
                if spec.custom_allocation_definition.is_none() && instance.custom_allocation_definition.is_none() =>
            {
                return Err(Error::invalid("The custom policy requires a customAllocationDefinition"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Check the custom allocation definition an enrollment would use (with the allocator: policy exists, ...).
    pub(super) async fn check_custom(&self, instance: &Instance, spec: &EnrollmentSpec) -> Result<()> {
        if spec.allocation_policy != Some(AllocationPolicy::Custom) {
            return Ok(());
        }
        let definition = spec
            .custom_allocation_definition
            .as_ref()
            .or(instance.custom_allocation_definition.as_ref())
            .ok_or_else(|| Error::invalid("The custom policy requires a customAllocationDefinition"))?;
        self.check_custom_definition(instance, definition).await
    }
}

/// Keep existing keys when an update omits them (reads never return keys), generate missing ones on create.
pub(super) fn fill_keys(new: &mut AttestationMechanism, existing: Option<&AttestationMechanism>) {
    if new.kind != AttestationType::SymmetricKey {
        return;
    }
    let old = existing.filter(|e| e.kind == AttestationType::SymmetricKey).and_then(|e| e.symmetric_key.clone());
    let keys = new.symmetric_key.get_or_insert_with(SymmetricKeyAttestation::default);
    let old = old.unwrap_or_default();
    if keys.primary_key.is_none() {
        keys.primary_key = Some(old.primary_key.unwrap_or_else(generate_key));
    }
    if keys.secondary_key.is_none() {
        keys.secondary_key = Some(old.secondary_key.unwrap_or_else(generate_key));
    }
}
