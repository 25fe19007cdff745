//! Route by hub capacity: each linked hub gets a weight from its capacity class (first host-name label ending
//! in `-large` = 5, `-small` = 1, otherwise 2); a stable hash of the registration ID picks a hub with those
//! weights, so a device lands on the same hub every time while the set of hubs is unchanged. The device's
//! payload is echoed back with the decision.

use dps_policy_sdk::{AllocationRequest, AllocationResponse, Rejection, json};

fn weight(hub: &str) -> u64 {
    let label = hub.split('.').next().unwrap_or_default().to_ascii_lowercase();
    if label.ends_with("-large") {
        5
    } else if label.ends_with("-small") {
        1
    } else {
        2
    }
}

/// FNV-1a: stable across builds and platforms (unlike std's hasher).
fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// The policy.
pub fn allocate(req: AllocationRequest) -> Result<AllocationResponse, Rejection> {
    let mut hubs: Vec<&String> = req.linked_hubs.iter().collect();
    hubs.sort();
    let total: u64 = hubs.iter().map(|h| weight(h)).sum();
    if total == 0 {
        return Err(Rejection::new("no linked hub to choose from"));
    }
    let mut ticket = fnv1a(&req.registration_id().to_ascii_lowercase()) % total;
    let hub = hubs
        .iter()
        .find(|h| {
            let w = weight(h);
            if ticket < w {
                true
            } else {
                ticket -= w;
                false
            }
        })
        .ok_or_else(|| Rejection::new("no hub picked"))?;
    let echo = req.device_runtime_context.payload.clone().unwrap_or(json!(null));
    Ok(AllocationResponse::to_hub(hub.as_str())
        .with_payload(json!({ "echo": echo, "hub": hub, "weight": weight(hub), "totalWeight": total })))
}

dps_policy_sdk::policy!(allocate);
