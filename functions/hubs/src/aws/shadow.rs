//! The classic (unnamed) thing shadow (`iot-data` plane): its desired state is the twin's desired properties.

use aws_sdk_iotdataplane::Client;
use aws_sdk_iotdataplane::primitives::Blob;
use dps_core::hubs::{HubFailure, HubFailureKind};
use serde_json::{Map, Value, json};

use super::errors::{failure, is_not_found};

/// The shadow's desired state; `None` when the thing has no shadow.
pub(crate) async fn desired(data: &Client, thing: &str) -> Result<Option<Map<String, Value>>, HubFailure> {
    let out = match data.get_thing_shadow().thing_name(thing).send().await {
        Ok(out) => out,
        Err(err) if is_not_found(&err) => return Ok(None),
        Err(err) => return Err(failure("GetThingShadow", thing, err)),
    };
    let document: Value =
        out.payload.as_ref().and_then(|p| serde_json::from_slice(p.as_ref()).ok()).ok_or_else(|| {
            HubFailure::new(
                HubFailureKind::Refused,
                format!("AWS IoT Core GetThingShadow for thing '{thing}' answered no JSON document"),
            )
        })?;
    let desired = document.pointer("/state/desired").and_then(Value::as_object).cloned().unwrap_or_default();
    Ok(Some(desired))
}

/// Merge `update` into the shadow's desired state (a null removes a key).
pub(crate) async fn update_desired(data: &Client, thing: &str, update: Map<String, Value>) -> Result<(), HubFailure> {
    let document = json!({ "state": { "desired": update } });
    data.update_thing_shadow()
        .thing_name(thing)
        .payload(Blob::new(serde_json::to_vec(&document).expect("JSON")))
        .send()
        .await
        .map_err(|e| failure("UpdateThingShadow", thing, e))?;
    Ok(())
}

/// Delete the shadow; none is not an error.
pub(crate) async fn delete(data: &Client, thing: &str) -> Result<(), HubFailure> {
    match data.delete_thing_shadow().thing_name(thing).send().await {
        Ok(_) => Ok(()),
        Err(err) if is_not_found(&err) => Ok(()),
        Err(err) => Err(failure("DeleteThingShadow", thing, err)),
    }
}
