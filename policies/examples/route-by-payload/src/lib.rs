//! Route by a field of the device payload: a device that sends `{"region": "eu"}` goes to the linked hub whose
//! first host-name label ends in `-eu` (e.g. `hub-eu.azure-devices.net`). Devices without a region, or with a
//! region no linked hub serves, are rejected with a message saying why.

use dps_policy_sdk::{AllocationRequest, AllocationResponse, Rejection, json};

/// The policy.
pub fn allocate(req: AllocationRequest) -> Result<AllocationResponse, Rejection> {
    let region = req
        .payload_field("region")
        .and_then(|r| r.as_str())
        .ok_or_else(|| Rejection::new("payload.region is required (a string such as \"eu\")"))?
        .to_ascii_lowercase();
    let suffix = format!("-{region}");
    let hub = req
        .linked_hubs
        .iter()
        .find(|h| h.split('.').next().is_some_and(|label| label.to_ascii_lowercase().ends_with(&suffix)))
        .ok_or_else(|| Rejection::new(format!("no linked hub serves region '{region}'")))?;
    dps_policy_sdk::log(&format!("{} -> {hub} (region {region})", req.registration_id()));
    Ok(AllocationResponse::to_hub(hub).with_payload(json!({ "routedBy": "region", "region": region })))
}

dps_policy_sdk::policy!(allocate);
