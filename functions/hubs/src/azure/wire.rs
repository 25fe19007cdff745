//! The registry's JSON: the device identity a registration writes, and twins read and patched.

use dps_core::hubs::{HubDevice, HubTwin};
use serde_json::{Map, Value, json};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The device identity for `PUT /devices/{id}`: enabled, authenticating as the device provisioned.
pub(crate) fn device_body(device: &HubDevice) -> Result<Value, String> {
    let authentication = match (&device.symmetric_keys, &device.certificate, device.ca_signed) {
        (Some((primary, secondary)), _, _) => json!({
            "type": "sas",
            "symmetricKey": { "primaryKey": primary, "secondaryKey": secondary },
        }),
        (None, _, true) => json!({ "type": "certificateAuthority" }),
        // One leaf, two thumbprints of it: SHA-256 (preferred) and SHA-1 (older tooling compares those).
        (None, Some(der), false) => json!({
            "type": "selfSigned",
            "x509Thumbprint": {
                "primaryThumbprint": hex_upper(&Sha256::digest(der)),
                "secondaryThumbprint": hex_upper(&Sha1::digest(der)),
            },
        }),
        (None, None, false) => {
            return Err(format!(
                "device {} has neither symmetric keys nor a certificate for the hub to authenticate it with",
                device.device_id
            ));
        }
    };
    Ok(json!({
        "deviceId": device.device_id,
        "status": "enabled",
        "authentication": authentication,
        "capabilities": { "iotEdge": device.iot_edge },
    }))
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A twin as `GET /twins/{id}` returns it: its etag and its tags and desired properties (without the
/// service's `$metadata` and `$version`).
pub(crate) fn parse_twin(body: &[u8]) -> Result<(String, HubTwin), String> {
    let twin: Value = serde_json::from_slice(body).map_err(|_| "the twin is not JSON".to_owned())?;
    let etag = twin.get("etag").and_then(Value::as_str).ok_or("the twin has no etag")?.to_owned();
    let mut twin = HubTwin::from_initial_twin(&twin);
    twin.desired.retain(|key, _| !key.starts_with('$'));
    Ok((etag, twin))
}

/// The `PATCH /twins/{id}` body that turns `current` into `wanted`: a twin patch merges, so keys that `wanted`
/// lacks are set to null (removed), at every depth. Nothing to patch: `None`.
pub(crate) fn twin_patch(current: &HubTwin, wanted: &HubTwin) -> Option<Value> {
    let tags = replace(&current.tags, &wanted.tags);
    let desired = replace(&current.desired, &wanted.desired);
    if tags.is_empty() && desired.is_empty() {
        return None;
    }
    Some(json!({ "tags": tags, "properties": { "desired": desired } }))
}

fn replace(current: &Map<String, Value>, wanted: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for (key, value) in wanted {
        match (current.get(key), value) {
            (Some(Value::Object(old)), Value::Object(new)) => {
                let nested = replace(old, new);
                if !nested.is_empty() {
                    patch.insert(key.clone(), Value::Object(nested));
                }
            }
            (Some(old), new) if old == new => {}
            _ => {
                patch.insert(key.clone(), value.clone());
            }
        }
    }
    for key in current.keys().filter(|k| !wanted.contains_key(*k)) {
        patch.insert(key.clone(), Value::Null);
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn twin(value: Value) -> HubTwin {
        HubTwin::from_initial_twin(&value)
    }

    #[test]
    fn a_patch_replaces_tags_and_desired_properties_at_every_depth() {
        let current = twin(json!({
            "tags": { "site": "a", "old": 1 },
            "properties": { "desired": { "keep": 1, "nested": { "x": 1, "gone": 2 }, "dropped": true } },
        }));
        let wanted = twin(json!({
            "tags": { "site": "b" },
            "properties": { "desired": { "keep": 1, "nested": { "x": 1 }, "new": [1] } },
        }));
        assert_eq!(
            twin_patch(&current, &wanted).unwrap(),
            json!({
                "tags": { "site": "b", "old": null },
                "properties": { "desired": { "nested": { "gone": null }, "new": [1], "dropped": null } },
            })
        );
        assert_eq!(twin_patch(&wanted, &wanted), None);
    }

    #[test]
    fn reading_a_twin_drops_service_metadata() {
        let body = json!({
            "etag": "AAAAAAAAAAE=", "tags": { "t": 1 },
            "properties": { "desired": { "a": 1, "$metadata": {}, "$version": 3 }, "reported": { "r": 1 } },
        });
        let (etag, twin) = parse_twin(body.to_string().as_bytes()).unwrap();
        assert_eq!(etag, "AAAAAAAAAAE=");
        assert_eq!(twin.to_initial_twin(), json!({ "tags": { "t": 1 }, "properties": { "desired": { "a": 1 } } }));
    }
}
