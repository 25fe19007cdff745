//! Deciding a registration: the record it leaves (assigned, failed or disabled), the hub by allocation
//! policy or custom allocation, and the substatus by Azure's reprovisioning rules.

use serde_json::json;

use super::device::Registration;
use super::{Dps, now};
use crate::allocation;
use crate::allocator::{AllocationFailure, AllocationRequest, AllocationResponse, DeviceRuntimeContext, codes};
use crate::metrics::{CustomAllocationRun, CustomMechanism};
use crate::model::{
    AllocationPolicy, AnyEnrollment, AttestationType, EnrollmentSpec, Instance, LinkedHub, ProvisioningStatus,
    RegistrationRecord, RegistrationStatus, ReprovisionPolicy, Substatus,
};

impl Dps {
    /// Compute the record this registration leaves (never fails: failures are recorded).
    pub(super) async fn decide(&self, r: &Registration<'_>) -> RegistrationRecord {
        let (instance, previous, req) = (r.instance, r.previous, r.req);
        let now = now();
        let spec = r.attested.enrollment.spec();
        // The device ID keeps one spelling whatever case the device sends its registration ID in: the
        // enrollment's (its deviceId, else its registrationId), or for a group's device the first one recorded.
        let (device_id, group_id) = match &r.attested.enrollment {
            AnyEnrollment::Individual(e) => (e.device_id.clone().unwrap_or_else(|| e.registration_id.clone()), None),
            AnyEnrollment::Group(g) => (
                previous.and_then(|p| p.device_id.clone()).unwrap_or_else(|| req.caller.registration_id.clone()),
                Some(g.enrollment_group_id.clone()),
            ),
        };
        let mut record = RegistrationRecord {
            registration_id: req.caller.registration_id.clone(),
            status: RegistrationStatus::Assigning,
            substatus: None,
            assigned_hub: None,
            device_id: Some(device_id),
            error_code: None,
            error_message: None,
            payload: None,
            created_date_time_utc: previous.map_or(now, |p| p.created_date_time_utc),
            last_updated_date_time_utc: now,
            etag: None,
            enrollment_group_id: group_id,
            attestation_type: r.attested.kind,
            x509: r.attested.x509.clone(),
            operation_id: new_operation_id(),
            initial_hub: previous.and_then(|p| p.initial_hub.clone()),
            initial_twin: None,
            tpm: None,
            issued_certificate_chain: None,
            pending_hub_removals: Vec::new(),
            settling_until: None,
        };
        if spec.provisioning_status == ProvisioningStatus::Disabled {
            record.status = RegistrationStatus::Disabled;
            record.assigned_hub = previous.and_then(|p| p.assigned_hub.clone());
            record.substatus = previous.and_then(|p| p.substatus);
            return record;
        }
        let current_hub = r.current_hub;
        let policy = spec.reprovision_policy.unwrap_or_default();
        // A hub that is no longer linked is never kept: the device is allocated afresh.
        let still_linked =
            current_hub.is_some_and(|hub| instance.linked_hubs.iter().any(|h| h.host_name.eq_ignore_ascii_case(hub)));
        let sticky = still_linked
            && (!policy.update_hub_assignment || (spec.reprovision_policy.is_none() && legacy_api(&req.api_version)));
        match self.allocate(r, sticky).await {
            Ok(response) => {
                let hub = response.iot_hub_host_name;
                // Azure's rule: the initial twin (the allocator's, else the enrollment's) applies on the first
                // assignment, and on a move to another hub when device data is not migrated.
                let moved = current_hub.is_some_and(|c| !c.eq_ignore_ascii_case(&hub));
                if current_hub.is_none() || (moved && !policy.migrate_device_data) {
                    record.initial_twin = response.initial_twin.or_else(|| spec.initial_twin.clone());
                }
                record.status = RegistrationStatus::Assigned;
                record.substatus = Some(substatus(previous, current_hub, &hub, policy));
                record.initial_hub.get_or_insert_with(|| hub.clone());
                record.assigned_hub = Some(hub);
                record.payload = response.payload;
            }
            Err(failure) => {
                record.status = RegistrationStatus::Failed;
                record.error_code = Some(failure.code);
                record.error_message = Some(failure.message);
                record.assigned_hub = current_hub.map(str::to_string);
            }
        }
        record
    }

    async fn allocate(&self, r: &Registration<'_>, sticky: bool) -> Result<AllocationResponse, AllocationFailure> {
        let (instance, spec) = (r.instance, r.attested.enrollment.spec());
        let policy = spec.allocation_policy.unwrap_or(instance.allocation_policy);
        let fail = |message: &str| AllocationFailure::new(codes::HUB_NOT_SPECIFIED, message);
        if policy == AllocationPolicy::Custom {
            let candidates = match (sticky, r.current_hub) {
                (true, Some(hub)) => vec![hub.to_string()],
                _ => candidate_hubs(instance, spec).into_iter().map(|h| h.host_name).collect(),
            };
            return self.custom(r, candidates).await;
        }
        if let (true, Some(hub)) = (sticky, r.current_hub) {
            return Ok(hub_only(hub));
        }
        let registration_id = &r.req.caller.registration_id;
        let hub = match policy {
            AllocationPolicy::Static => static_hub(instance, spec),
            AllocationPolicy::Hashed => {
                allocation::hashed(registration_id, &candidate_hubs(instance, spec)).map(|h| h.host_name.clone())
            }
            AllocationPolicy::GeoLatency => allocation::geo_latency(
                registration_id,
                &candidate_hubs(instance, spec),
                self.settings.serving_region.as_deref(),
            )
            .map(|h| h.host_name.clone()),
            AllocationPolicy::Custom => unreachable!("handled above"),
        };
        hub.map(|h| hub_only(&h)).ok_or_else(|| match policy {
            AllocationPolicy::Static => fail("Static allocation requires the enrollment to name one linked IoT hub"),
            _ => fail("No linked IoT hub is available for allocation"),
        })
    }

    /// Ask the custom allocator; its answer must name one of the hubs offered.
    async fn custom(
        &self,
        r: &Registration<'_>,
        linked_hubs: Vec<String>,
    ) -> Result<AllocationResponse, AllocationFailure> {
        let allocator = self.allocator.as_ref().ok_or_else(|| {
            AllocationFailure::new(codes::CUSTOM_NOT_AVAILABLE, "Custom allocation is not available in this deployment")
        })?;
        let definition = r
            .attested
            .enrollment
            .spec()
            .custom_allocation_definition
            .as_ref()
            .or(r.instance.custom_allocation_definition.as_ref())
            .ok_or_else(|| {
                AllocationFailure::new(codes::NO_DEFINITION, "Custom allocation has no definition (webhook or policy)")
            })?;
        if linked_hubs.is_empty() {
            return Err(AllocationFailure::new(
                codes::HUB_NOT_SPECIFIED,
                "No linked IoT hub is available for allocation",
            ));
        }
        let context = DeviceRuntimeContext {
            registration_id: r.req.caller.registration_id.clone(),
            symmetric_key: (r.attested.kind == AttestationType::SymmetricKey).then(|| json!({})),
            x509: r.attested.x509.clone(),
            tpm: r.req.tpm.as_ref().filter(|_| r.attested.kind == AttestationType::Tpm).map(|t| json!(t)),
            current_iot_hub_host_name: r.current_hub.map(str::to_string),
            current_device_id: r.current_hub.and_then(|_| r.previous.and_then(|p| p.device_id.clone())),
            payload: r.req.payload.clone(),
        };
        let request = AllocationRequest::new(&r.attested.enrollment, context, linked_hubs);
        let started = std::time::Instant::now();
        let (answer, cost) = allocator.allocate_measured(r.instance, definition, &request).await;
        let answer = answer.and_then(|response| request.check_offered(response));
        self.metrics.custom_allocation(&CustomAllocationRun {
            mechanism: if definition.policy_name.is_some() {
                CustomMechanism::Policy
            } else {
                CustomMechanism::Webhook
            },
            duration: started.elapsed(),
            fuel_consumed: cost.fuel_consumed,
            error_code: answer.as_ref().err().map(|f| f.code),
        });
        answer
    }
}

fn hub_only(hub: &str) -> AllocationResponse {
    AllocationResponse { iot_hub_host_name: hub.to_string(), initial_twin: None, payload: None }
}

/// Hubs automatic allocation may pick: the enrollment's `iotHubs` (those still linked), else every linked hub
/// that applies the allocation policy.
pub(crate) fn candidate_hubs(instance: &Instance, spec: &EnrollmentSpec) -> Vec<LinkedHub> {
    match spec.iot_hubs.as_deref() {
        Some(named) if !named.is_empty() => instance
            .linked_hubs
            .iter()
            .filter(|h| named.iter().any(|n| n.eq_ignore_ascii_case(&h.host_name)))
            .cloned()
            .collect(),
        _ => instance.linked_hubs.iter().filter(|h| h.apply_allocation_policy).cloned().collect(),
    }
}

fn static_hub(instance: &Instance, spec: &EnrollmentSpec) -> Option<String> {
    let named = spec.iot_hub_host_name.clone().or_else(|| match spec.iot_hubs.as_deref() {
        Some([only]) => Some(only.clone()),
        _ => None,
    })?;
    instance.linked_hubs.iter().find(|h| h.host_name.eq_ignore_ascii_case(&named)).map(|h| h.host_name.clone())
}

fn substatus(
    previous: Option<&RegistrationRecord>,
    current_hub: Option<&str>,
    new_hub: &str,
    policy: ReprovisionPolicy,
) -> Substatus {
    let Some(current) = current_hub else {
        return Substatus::InitialAssignment;
    };
    let initial = previous.and_then(|p| p.initial_hub.as_deref());
    if current.eq_ignore_ascii_case(new_hub) {
        if policy.update_hub_assignment && !policy.migrate_device_data {
            return Substatus::DeviceDataReset;
        }
        return previous.and_then(|p| p.substatus).unwrap_or(Substatus::InitialAssignment);
    }
    if initial.is_some_and(|i| i.eq_ignore_ascii_case(new_hub)) {
        Substatus::ReprovisionedToInitialAssignment
    } else if policy.migrate_device_data {
        Substatus::DeviceDataMigrated
    } else {
        Substatus::DeviceDataReset
    }
}

/// api-versions up to 2018-04-01 keep the pre-2018 sticky behaviour for enrollments without a reprovision policy.
fn legacy_api(api_version: &str) -> bool {
    api_version.get(..10).is_some_and(|date| date <= "2018-04-01")
}

fn new_operation_id() -> String {
    let id = uuid::Uuid::new_v4();
    format!("5.{:016x}.{}", rand::random::<u64>(), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_versions() {
        assert!(legacy_api("2017-11-15"));
        assert!(legacy_api("2018-04-01"));
        assert!(!legacy_api("2019-03-31"));
        assert!(!legacy_api("x"));
    }

    #[test]
    fn substatus_rules() {
        let migrate = ReprovisionPolicy::default();
        let reset = ReprovisionPolicy { update_hub_assignment: true, migrate_device_data: false };
        assert_eq!(substatus(None, None, "a", migrate), Substatus::InitialAssignment);
        assert_eq!(substatus(None, Some("a"), "b", migrate), Substatus::DeviceDataMigrated);
        assert_eq!(substatus(None, Some("a"), "b", reset), Substatus::DeviceDataReset);
        assert_eq!(substatus(None, Some("a"), "a", reset), Substatus::DeviceDataReset);
    }
}
