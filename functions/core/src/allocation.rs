//! Built-in allocation policies: hashed (weighted rendezvous hashing), lowest latency (great-circle distance
//! between the serving region and each hub's location, ties hashed) and static.

use sha2::{Digest, Sha256};

use crate::model::LinkedHub;

/// Hashed allocation: weighted rendezvous hashing of the registration ID over `hubs`.
///
/// Each hub scores `weight / -ln(u)`, `u` a uniform draw from SHA-256(registration ID, hub); the highest wins.
/// The same device gets the same hub while the hub set is unchanged, a hub's share of devices is proportional to
/// its weight, and adding or removing a hub moves only the devices that must move.
pub fn hashed<'a>(registration_id: &str, hubs: &'a [LinkedHub]) -> Option<&'a LinkedHub> {
    hubs.iter()
        .map(|hub| (score(registration_id, hub), hub))
        .max_by(|(a, ha), (b, hb)| a.total_cmp(b).then_with(|| hb.host_name.cmp(&ha.host_name)))
        .map(|(_, hub)| hub)
}

fn score(registration_id: &str, hub: &LinkedHub) -> f64 {
    let mut digest = Sha256::new();
    digest.update(registration_id.to_ascii_lowercase().as_bytes());
    digest.update([0]);
    digest.update(hub.host_name.to_ascii_lowercase().as_bytes());
    let bytes: [u8; 8] = digest.finalize()[..8].try_into().expect("8 bytes");
    // Uniform in (0, 1]: never 0, so ln is finite.
    let u = ((u64::from_be_bytes(bytes) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let weight = f64::from(hub.allocation_weight.clamp(1, 1000));
    if u >= 1.0 { f64::INFINITY } else { weight / -u.ln() }
}

/// Lowest-latency allocation: the hubs nearest to `serving_region` (by great-circle distance between region
/// coordinates), ties (hubs within 50 km of each other's distance, e.g. in the same region) hashed.
/// Hubs with unknown locations are farthest; with no known serving region every hub ties.
pub fn geo_latency<'a>(
    registration_id: &str,
    hubs: &'a [LinkedHub],
    serving_region: Option<&str>,
) -> Option<&'a LinkedHub> {
    let origin = serving_region.and_then(region_coordinates);
    let distance = |hub: &LinkedHub| match (origin, hub.location.as_deref().and_then(region_coordinates)) {
        (Some(a), Some(b)) => great_circle_km(a, b),
        (Some(_), None) => f64::INFINITY,
        (None, _) => 0.0,
    };
    let nearest = hubs.iter().map(distance).min_by(f64::total_cmp)?;
    let tied: Vec<LinkedHub> =
        hubs.iter().filter(|h| distance(h) <= nearest + 50.0 || nearest.is_infinite()).cloned().collect();
    let pick = hashed(registration_id, &tied)?;
    hubs.iter().find(|h| h.host_name == pick.host_name)
}

/// Great-circle distance in kilometres between two (latitude, longitude) points in degrees.
pub fn great_circle_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

/// Approximate coordinates of AWS and Azure regions (case-insensitive names), or `None` if unknown.
pub fn region_coordinates(region: &str) -> Option<(f64, f64)> {
    let region = region.to_ascii_lowercase();
    REGIONS.iter().find(|(names, _)| names.split('|').any(|n| n == region)).map(|(_, c)| *c)
}

/// Region names (AWS | Azure aliases) and their approximate coordinates.
const REGIONS: &[(&str, (f64, f64))] = &[
    ("us-east-1|eastus|virginia", (38.9, -77.4)),
    ("us-east-2|eastus2|ohio", (40.0, -83.0)),
    ("us-west-1|westus|california", (37.4, -121.9)),
    ("us-west-2|westus2|oregon", (45.8, -119.7)),
    ("centralus|iowa", (41.6, -93.6)),
    ("southcentralus|texas", (29.4, -98.5)),
    ("ca-central-1|canadacentral", (43.7, -79.4)),
    ("sa-east-1|brazilsouth", (-23.5, -46.6)),
    ("eu-west-1|northeurope|ireland", (53.3, -6.3)),
    ("eu-west-2|uksouth|london", (51.5, -0.1)),
    ("eu-west-3|francecentral|paris", (48.9, 2.4)),
    ("eu-central-1|germanywestcentral|frankfurt", (50.1, 8.7)),
    ("westeurope|netherlands", (52.4, 4.9)),
    ("eu-north-1|swedencentral|stockholm", (59.3, 18.1)),
    ("eu-south-1|italynorth|milan", (45.5, 9.2)),
    ("me-central-1|uaenorth", (25.3, 55.3)),
    ("af-south-1|southafricanorth", (-33.9, 18.4)),
    ("ap-south-1|centralindia|mumbai", (19.1, 72.9)),
    ("ap-southeast-1|southeastasia|singapore", (1.3, 103.8)),
    ("ap-southeast-2|australiaeast|sydney", (-33.9, 151.2)),
    ("ap-northeast-1|japaneast|tokyo", (35.7, 139.7)),
    ("ap-northeast-2|koreacentral|seoul", (37.6, 127.0)),
    ("ap-east-1|eastasia|hongkong", (22.3, 114.2)),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(name: &str, weight: u32, location: Option<&str>) -> LinkedHub {
        LinkedHub {
            host_name: name.into(),
            allocation_weight: weight,
            apply_allocation_policy: true,
            location: location.map(Into::into),
            connector: None,
        }
    }

    #[test]
    fn hashed_is_stable_and_weighted() {
        let hubs = vec![hub("a.net", 1, None), hub("b.net", 1, None), hub("c.net", 2, None)];
        let mut counts = std::collections::HashMap::new();
        for i in 0..8000 {
            let id = format!("device-{i}");
            let first = hashed(&id, &hubs).unwrap().host_name.clone();
            assert_eq!(hashed(&id, &hubs).unwrap().host_name, first, "stable");
            assert_eq!(hashed(&id.to_uppercase(), &hubs).unwrap().host_name, first, "case-insensitive");
            *counts.entry(first).or_insert(0u32) += 1;
        }
        // Expected 2000 / 2000 / 4000.
        assert!((1800..2200).contains(&counts["a.net"]), "{counts:?}");
        assert!((1800..2200).contains(&counts["b.net"]), "{counts:?}");
        assert!((3700..4300).contains(&counts["c.net"]), "{counts:?}");
    }

    #[test]
    fn removing_a_hub_moves_only_its_devices() {
        let all = vec![hub("a.net", 1, None), hub("b.net", 1, None), hub("c.net", 1, None)];
        let fewer = vec![hub("a.net", 1, None), hub("b.net", 1, None)];
        for i in 0..2000 {
            let id = format!("d{i}");
            let before = &hashed(&id, &all).unwrap().host_name;
            if before != "c.net" {
                assert_eq!(&hashed(&id, &fewer).unwrap().host_name, before);
            }
        }
    }

    #[test]
    fn geo_picks_the_nearest_and_hashes_ties() {
        let hubs = vec![
            hub("us.net", 1, Some("us-east-1")),
            hub("eu1.net", 1, Some("eu-west-1")),
            hub("eu2.net", 1, Some("northeurope")),
            hub("unknown.net", 1, Some("mars")),
        ];
        let mut seen = std::collections::HashSet::new();
        for i in 0..200 {
            let pick = geo_latency(&format!("d{i}"), &hubs, Some("eu-west-2")).unwrap();
            assert!(pick.host_name.starts_with("eu"), "{}", pick.host_name);
            seen.insert(pick.host_name.clone());
        }
        assert_eq!(seen.len(), 2, "both Irish hubs share the load");
        assert_eq!(geo_latency("x", &hubs, Some("virginia")).unwrap().host_name, "us.net");
    }

    #[test]
    fn geo_without_serving_region_falls_back_to_hashed() {
        let hubs = vec![hub("a.net", 1, Some("us-east-1")), hub("b.net", 1, Some("eu-west-1"))];
        for i in 0..50 {
            let id = format!("d{i}");
            assert_eq!(geo_latency(&id, &hubs, None).unwrap(), hashed(&id, &hubs).unwrap());
        }
    }
}
