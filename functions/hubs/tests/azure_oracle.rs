//! The connector's requests against what the official service SDKs send (tests/hubs/azure/fixtures, recorded by
//! tests/hubs/azure/record.sh): method, path, api-version, Authorization form, If-Match, Content-Type and body
//! shape, for each operation the SDKs were recorded doing.

mod support;

use dps_core::hubs::{HubConnector, HubDevice, HubTarget, HubTwin};
use dps_core::model::AttestationType;
use dps_hubs::AzureIotHubConnector;
use serde_json::{Map, Value, json};
use support::azure_registry::{self, Registry, connection_string, sas_signed, sas_valid};
use support::server::Recorded;

fn fixtures(sdk: &str) -> Vec<Value> {
    let path = format!("{}/../../tests/hubs/azure/fixtures/{sdk}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

fn inputs() -> Value {
    let path = format!("{}/../../tests/hubs/azure/inputs.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The same keys at every depth, and the same JSON type for each value.
fn same_shape(ours: &Value, theirs: &Value, at: &str) {
    match (ours, theirs) {
        (Value::Object(a), Value::Object(b)) => {
            let (ka, kb): (Vec<_>, Vec<_>) = (a.keys().collect(), b.keys().collect());
            assert_eq!(ka, kb, "keys at {at}");
            for (key, value) in a {
                same_shape(value, &b[key], &format!("{at}.{key}"));
            }
        }
        (a, b) => assert_eq!(std::mem::discriminant(a), std::mem::discriminant(b), "type at {at}: {a} vs {b}"),
    }
}

fn sas_fields(authorization: &str) -> Map<String, Value> {
    let fields = authorization.strip_prefix("SharedAccessSignature ").expect("a SharedAccessSignature");
    fields.split('&').map(|f| f.split_once('=').expect("k=v")).map(|(k, v)| (k.into(), json!(v))).collect()
}

/// Compare one of our requests with the SDK's request for `operation`.
fn compare(ours: &Recorded, sdk: &str, operation: &str) {
    let theirs = fixtures(sdk).into_iter().find(|r| r["operation"] == operation).expect(operation);
    let at = format!("{sdk} {operation}");
    assert_eq!(ours.method, theirs["method"], "{at}: method");
    assert_eq!(ours.path, theirs["path"], "{at}: path");
    let query: Map<String, Value> =
        ours.query.split('&').filter_map(|q| q.split_once('=')).map(|(k, v)| (k.into(), json!(v))).collect();
    assert_eq!(Value::Object(query), theirs["query"], "{at}: query");

    let (our_auth, their_auth) =
        (ours.header("authorization").unwrap(), theirs["headers"]["authorization"].as_str().unwrap());
    let (a, b) = (sas_fields(our_auth), sas_fields(their_auth));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>(), "{at}: token fields");
    assert_eq!(a["sr"], b["sr"], "{at}: sr");
    assert_eq!(a["skn"], b["skn"], "{at}: skn");
    assert!(sas_valid(our_auth), "{at}: our token does not verify: {our_auth}");

    let header = |r: &Value, name: &str| r["headers"][name].as_str().map(str::to_owned);
    assert_eq!(ours.header("content-type").map(str::to_owned), header(&theirs, "content-type"), "{at}: content type");
    let their_if_match = header(&theirs, "if-match");
    match (ours.header("if-match"), their_if_match.as_deref()) {
        (None, None) => {}
        (Some(a), Some(b)) if b == "\"*\"" && operation == "deleteDevice" => assert_eq!(a, b, "{at}: If-Match"),
        (Some(a), Some(b)) => {
            assert!(a.starts_with('"') && a.ends_with('"') && b.starts_with('"') && b.ends_with('"'), "{at}: {a} {b}")
        }
        (a, b) => panic!("{at}: If-Match {a:?}, the SDK sent {b:?}"),
    }
    match (ours.json(), theirs["body"].is_null()) {
        (None, true) => assert!(ours.body.is_empty(), "{at}: a body the SDK does not send"),
        (Some(body), false) => same_shape(&body, &theirs["body"], &at),
        (body, _) => panic!("{at}: body {body:?}, the SDK sent {}", theirs["body"]),
    }
}

fn device(id: &str) -> HubDevice {
    HubDevice {
        device_id: id.into(),
        registration_id: id.into(),
        attestation: AttestationType::SymmetricKey,
        symmetric_keys: None,
        certificate: None,
        ca_signed: false,
        iot_edge: false,
    }
}

#[tokio::test]
async fn the_connectors_requests_match_the_service_sdks() {
    let input = inputs();
    let text = |k: &str| input[k].as_str().unwrap().to_owned();
    assert_eq!(text("hostName"), azure_registry::HOST);
    assert_eq!(text("key"), azure_registry::KEY);
    // The SDKs' tokens verify as the fake hub verifies ours (at recording time: they have expired since).
    for sdk in ["node", "python"] {
        for recorded in fixtures(sdk) {
            let auth = recorded["headers"]["authorization"].as_str().unwrap();
            let se: u64 = sas_fields(auth)["se"].as_str().unwrap().parse().unwrap();
            assert!(sas_signed(auth, se - 3600), "{sdk} {}: {auth}", recorded["operation"]);
        }
    }

    let registry = Registry::start().await;
    let connector = AzureIotHubConnector::new().with_endpoint(&registry.server.url);
    let (settings, credentials) = (Map::new(), connection_string());
    let hub = HubTarget { host_name: azure_registry::HOST, settings: &settings, credentials: Some(&credentials) };

    let sas =
        HubDevice { symmetric_keys: Some((text("primaryKey"), text("secondaryKey"))), ..device(&text("sasDevice")) };
    let x509 = HubDevice {
        attestation: AttestationType::X509,
        certificate: Some(b"a leaf certificate's DER".to_vec()),
        ..device(&text("selfSignedDevice"))
    };
    let ca =
        HubDevice { attestation: AttestationType::X509, ca_signed: true, iot_edge: true, ..device(&text("caDevice")) };
    for device in [&sas, &x509, &ca] {
        connector.upsert_device(hub, device).await.unwrap();
    }
    // Again: it exists (409), so the connector reads it and updates it under its etag.
    connector.upsert_device(hub, &sas).await.unwrap();
    let twin =
        HubTwin::from_initial_twin(&json!({ "tags": input["tags"], "properties": { "desired": input["desired"] } }));
    connector.apply_twin(hub, &sas.device_id, &twin).await.unwrap();
    assert_eq!(connector.read_twin(hub, &sas.device_id).await.unwrap(), Some(twin));
    connector.remove_device(hub, &sas.device_id).await.unwrap();

    let ours = registry.server.requests();
    let statuses: Vec<_> = ours.iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let expected = [
        ("createSas", "PUT /devices/oracle-sas"),
        ("createSelfSigned", "PUT /devices/oracle-x509"),
        ("createCertificateAuthority", "PUT /devices/oracle-ca"),
        ("", "PUT /devices/oracle-sas"),
        ("getDevice", "GET /devices/oracle-sas"),
        ("updateDevice", "PUT /devices/oracle-sas"),
        ("getTwin", "GET /twins/oracle-sas"),
        ("updateTwin", "PATCH /twins/oracle-sas"),
        ("getTwin", "GET /twins/oracle-sas"),
        ("deleteDevice", "DELETE /devices/oracle-sas"),
    ];
    assert_eq!(statuses, expected.iter().map(|(_, r)| *r).collect::<Vec<_>>());
    for (request, (operation, _)) in ours.iter().zip(expected) {
        let operation = if operation.is_empty() { "createSas" } else { operation };
        for sdk in ["node", "python"] {
            compare(request, sdk, operation);
        }
    }
    let thumbprints = &ours[1].json().unwrap()["authentication"]["x509Thumbprint"];
    assert_eq!(thumbprints["primaryThumbprint"].as_str().unwrap().len(), 64, "SHA-256, hex");
    assert_eq!(thumbprints["secondaryThumbprint"].as_str().unwrap().len(), 40, "SHA-1, hex");
}
