//! An Azure IoT Hub registry as the REST API documents it, in memory: SAS tokens checked against the policy
//! key, 409 when creating a device that exists, 412 on a stale etag, 404 for unknown devices, twin patches
//! merged (null removes). Faults queued by the test are answered first, one per request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use super::server::{Recorded, Server, reply, serve};

pub const HOST: &str = "oracle-hub.azure-devices.net";
pub const KEY_NAME: &str = "registryReadWrite";
pub const KEY: &str = "b3JhY2xlLWh1Yi10ZXN0LWtleS1ub3QtYS1zZWNyZXQ=";

pub fn connection_string() -> String {
    format!("HostName={HOST};SharedAccessKeyName={KEY_NAME};SharedAccessKey={KEY}")
}

/// What the next request gets instead of the registry's answer.
pub enum Fault {
    /// This status (with `Retry-After` when given).
    Status(u16, Option<&'static str>),
    /// No answer, ever.
    Hang,
    /// Someone else writes the device's twin first (its etag changes), then the request is served.
    ConcurrentTwinWrite(&'static str),
}

/// A twin: etag, tags, desired properties.
pub type Twin = (u64, Map<String, Value>, Map<String, Value>);

#[derive(Default)]
pub struct State {
    pub devices: BTreeMap<String, (u64, Value)>,
    pub twins: BTreeMap<String, Twin>,
    pub faults: VecDeque<Fault>,
    next_etag: u64,
}

pub struct Registry {
    pub server: Server,
    pub state: Arc<Mutex<State>>,
}

impl Registry {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let server = serve(move |request| {
            let state = shared.clone();
            Box::pin(async move {
                let fault = state.lock().unwrap().faults.pop_front();
                match fault {
                    Some(Fault::Hang) => {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        reply(500, None, &[])
                    }
                    Some(Fault::Status(status, retry_after)) => {
                        let headers: Vec<(&str, &str)> = retry_after.map(|r| ("Retry-After", r)).into_iter().collect();
                        reply(status, Some(json!({ "Message": "ErrorCode:ThrottlingException;injected" })), &headers)
                    }
                    Some(Fault::ConcurrentTwinWrite(id)) => {
                        let mut state = state.lock().unwrap();
                        let etag = state.etag();
                        if let Some(twin) = state.twins.get_mut(id) {
                            twin.0 = etag;
                        }
                        state.answer(&request)
                    }
                    None => state.lock().unwrap().answer(&request),
                }
            })
        })
        .await;
        Self { server, state }
    }

    pub fn fault(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push_back(fault);
    }
}

/// Whether `authorization` is a hub SAS token for HOST signed with KEY, valid now.
pub fn sas_valid(authorization: &str) -> bool {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    sas_signed(authorization, now)
}

/// Whether `authorization` is a hub SAS token for HOST signed with KEY, valid at `at` (Unix seconds).
pub fn sas_signed(authorization: &str, at: u64) -> bool {
    let Some(fields) = authorization.strip_prefix("SharedAccessSignature ") else { return false };
    let fields: BTreeMap<&str, &str> = fields.split('&').filter_map(|f| f.split_once('=')).collect();
    let (Some(sr), Some(sig), Some(se), Some(skn)) =
        (fields.get("sr"), fields.get("sig"), fields.get("se"), fields.get("skn"))
    else {
        return false;
    };
    let decoded_sr = percent_encoding::percent_decode_str(sr).decode_utf8_lossy();
    let Ok(sig) = STANDARD.decode(percent_encoding::percent_decode_str(sig).decode_utf8_lossy().as_bytes()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&STANDARD.decode(KEY).unwrap()).unwrap();
    mac.update(format!("{sr}\n{se}").as_bytes());
    decoded_sr.eq_ignore_ascii_case(HOST)
        && *skn == KEY_NAME
        && se.parse::<u64>().is_ok_and(|se| se > at)
        && mac.verify_slice(&sig).is_ok()
}

fn merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(nested) => {
                let entry = target.entry(key.clone()).or_insert_with(|| json!({}));
                if !entry.is_object() {
                    *entry = json!({});
                }
                merge(entry.as_object_mut().unwrap(), nested);
            }
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

impl State {
    fn etag(&mut self) -> u64 {
        self.next_etag += 1;
        self.next_etag
    }

    fn answer(&mut self, request: &Recorded) -> Response {
        let error = |status, code: &str| reply(status, Some(json!({ "Message": format!("ErrorCode:{code};") })), &[]);
        if !request.query.split('&').any(|q| q == "api-version=2021-04-12") {
            return error(400, "InvalidProtocolVersion");
        }
        if !request.header("authorization").is_some_and(sas_valid) {
            return error(401, "IotHubUnauthorizedAccess");
        }
        let if_match = request.header("if-match").map(|e| e.trim_matches('"').to_owned());
        let matches = |etag: u64| if_match.as_deref().is_some_and(|m| m == "*" || m == etag.to_string());
        let path: Vec<String> = request
            .path
            .trim_start_matches('/')
            .split('/')
            .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned())
            .collect();
        let [collection, id] = path.as_slice() else { return error(404, "NotFound") };
        match (request.method.as_str(), collection.as_str()) {
            ("PUT", "devices") => {
                let Some(body) = request.json() else { return error(400, "ArgumentInvalid") };
                match (self.devices.get(id), &if_match) {
                    (Some(_), None) => return error(409, "DeviceAlreadyExists"),
                    (None, Some(_)) => return error(404, "DeviceNotFound"),
                    (Some((etag, _)), Some(_)) if !matches(*etag) => return error(412, "PreconditionFailed"),
                    _ => {}
                }
                let etag = self.etag();
                if !self.twins.contains_key(id) {
                    let twin_etag = self.etag();
                    self.twins.insert(id.clone(), (twin_etag, Map::new(), Map::new()));
                }
                let mut device = body.clone();
                device["etag"] = json!(etag.to_string());
                self.devices.insert(id.clone(), (etag, device.clone()));
                reply(200, Some(device), &[])
            }
            ("GET", "devices") => match self.devices.get(id) {
                Some((_, device)) => reply(200, Some(device.clone()), &[]),
                None => error(404, "DeviceNotFound"),
            },
            ("DELETE", "devices") => match self.devices.get(id) {
                None => error(404, "DeviceNotFound"),
                Some((etag, _)) if !matches(*etag) => error(412, "PreconditionFailed"),
                Some(_) => {
                    self.devices.remove(id);
                    self.twins.remove(id);
                    reply(204, None, &[])
                }
            },
            ("GET", "twins") => match self.twins.get(id) {
                Some(twin) => reply(200, Some(twin_json(id, twin)), &[]),
                None => error(404, "DeviceNotFound"),
            },
            ("PATCH", "twins") => {
                let Some(patch) = request.json() else { return error(400, "ArgumentInvalid") };
                let etag = self.etag();
                let Some(twin) = self.twins.get_mut(id) else { return error(404, "DeviceNotFound") };
                if !if_match.as_deref().is_some_and(|m| m == "*" || m == twin.0.to_string()) {
                    return error(412, "PreconditionFailed");
                }
                merge(&mut twin.1, patch["tags"].as_object().unwrap_or(&Map::new()));
                merge(&mut twin.2, patch["properties"]["desired"].as_object().unwrap_or(&Map::new()));
                twin.0 = etag;
                reply(200, Some(twin_json(id, twin)), &[])
            }
            _ => error(405, "MethodNotAllowed"),
        }
    }
}

fn twin_json(id: &str, (etag, tags, desired): &Twin) -> Value {
    let mut desired = desired.clone();
    desired.insert("$metadata".into(), json!({ "$lastUpdated": "2024-01-01T00:00:00Z" }));
    desired.insert("$version".into(), json!(*etag));
    json!({
        "deviceId": id, "etag": etag.to_string(), "version": etag, "status": "enabled", "tags": tags,
        "properties": { "desired": desired, "reported": { "$metadata": {}, "$version": 1 } },
    })
}
