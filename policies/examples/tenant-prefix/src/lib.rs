//! Map registration-ID prefixes to tenants: `acme-...` devices go to Acme's hub, `globex-...` to Globex's, each
//! with initial twin tags naming the tenant and a tenant-specific desired telemetry interval. Unknown prefixes
//! are rejected.

use dps_policy_sdk::{AllocationRequest, AllocationResponse, Rejection, json};

/// A tenant: devices whose registration ID starts with `prefix` belong to it.
struct Tenant {
    prefix: &'static str,
    name: &'static str,
    /// First host-name label of the tenant's hub.
    hub_label: &'static str,
    telemetry_interval_secs: u32,
}

const TENANTS: &[Tenant] = &[
    Tenant { prefix: "acme-", name: "acme", hub_label: "acme-hub", telemetry_interval_secs: 60 },
    Tenant { prefix: "globex-", name: "globex", hub_label: "globex-hub", telemetry_interval_secs: 300 },
];

/// The policy.
pub fn allocate(req: AllocationRequest) -> Result<AllocationResponse, Rejection> {
    let id = req.registration_id().to_ascii_lowercase();
    let tenant = TENANTS
        .iter()
        .find(|t| id.starts_with(t.prefix))
        .ok_or_else(|| Rejection::new(format!("registration ID '{id}' belongs to no known tenant")))?;
    let hub = req
        .linked_hubs
        .iter()
        .find(|h| h.split('.').next().is_some_and(|label| label.eq_ignore_ascii_case(tenant.hub_label)))
        .ok_or_else(|| Rejection::new(format!("tenant '{}' has no linked hub", tenant.name)))?;
    Ok(AllocationResponse::to_hub(hub)
        .with_tags(json!({ "tenant": tenant.name }))
        .with_desired(json!({ "telemetryIntervalSecs": tenant.telemetry_interval_secs })))
}

dps_policy_sdk::policy!(allocate);
