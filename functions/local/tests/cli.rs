//! The `dps` binary as an operator uses it: instance and hub commands on a data dir, tokens, and the data dir
//! lock while the server runs (client commands over the service API: tests/client.rs).

use std::path::Path;

use base64::Engine;
use dps_core::sas::SasToken;
use serde_json::Value;

mod support;
use support::{Server, dps};

fn ok(data_dir: &Path, args: &[&str]) -> String {
    let out = dps(data_dir, args);
    assert!(out.status.success(), "dps {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn instances_and_hubs_are_managed_on_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    let list = ok(data, &["instance", "list"]);
    assert!(list.contains("default") && list.contains("localhost"), "{list}");
    let created = ok(data, &["instance", "create", "--name", "plant-2", "--host", "dps.plant-2.example"]);
    assert!(created.contains("plant-2"), "{created}");
    let refused = dps(data, &["instance", "create", "--name", "plant-2", "--host", "other.example"]);
    assert!(!refused.status.success(), "names are unique");

    ok(
        data,
        &[
            "hub",
            "link",
            "--instance",
            "plant-2",
            "--host",
            "hub-1.example.net",
            "--weight",
            "3",
            "--location",
            "eu-west-1",
        ],
    );
    let shown: Value = serde_json::from_str(&ok(data, &["instance", "show", "plant-2", "--json"])).unwrap();
    assert_eq!(shown["serviceHostName"], "dps.plant-2.example");
    assert_eq!(shown["linkedHubs"][0]["hostName"], "hub-1.example.net");
    assert_eq!(shown["linkedHubs"][0]["allocationWeight"], 3);
    let conn = shown["connectionString"].as_str().unwrap();
    assert!(conn.starts_with("HostName=dps.plant-2.example;SharedAccessKeyName=provisioningserviceowner;"));

    let bad = dps(data, &["hub", "link", "--instance", "plant-2", "--host", "not a host"]);
    assert!(!bad.status.success());
    ok(data, &["hub", "unlink", "--instance", "plant-2", "--host", "hub-1.example.net"]);
    let shown: Value = serde_json::from_str(&ok(data, &["instance", "show", "plant-2", "--json"])).unwrap();
    assert_eq!(shown["linkedHubs"], serde_json::json!([]));
}

#[test]
fn tokens_verify_with_the_keys_they_were_made_from() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let shown: Value = serde_json::from_str(&ok(data, &["instance", "show", "default", "--json"])).unwrap();
    let conn = shown["connectionString"].as_str().unwrap();
    let key = conn.split("SharedAccessKey=").nth(1).unwrap();

    let header = ok(data, &["token", "service", "--connection-string", conn]);
    let token = SasToken::parse(header.trim()).unwrap();
    assert_eq!(token.resource, "localhost");
    assert_eq!(token.key_name.as_deref(), Some("provisioningserviceowner"));
    assert!(token.signed_with_any([key]));
    let from_instance = ok(data, &["token", "service", "--instance", "default"]);
    assert!(SasToken::parse(from_instance.trim()).unwrap().signed_with_any([key]));

    let group_key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let header = ok(
        data,
        &["token", "device", "--scope", "0ne00000001", "--registration-id", "dev-1", "--group-key", &group_key],
    );
    let token = SasToken::parse(header.trim()).unwrap();
    assert_eq!(token.resource, "0ne00000001/registrations/dev-1");
    assert_eq!(token.key_name.as_deref(), Some("registration"));
    let device_key = dps_core::sas::derive_device_key(&group_key, "dev-1").unwrap();
    assert!(token.signed_with_any([device_key.as_str()]));
    assert!(!token.signed_with_any([group_key.as_str()]), "signed with the derived key, not the group key");
}

#[test]
fn operator_commands_are_refused_while_the_server_holds_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let mut server = Server::start(data, &[]);
    let info = server.info.clone();
    assert!(info["idScope"].as_str().unwrap().starts_with("0ne"));
    assert!(Path::new(info["caCertificate"].as_str().unwrap()).is_file());

    let refused = dps(data, &["instance", "create", "--name", "plant-3", "--host", "dps.plant-3.example"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    // `dps hub` goes through the running server's service API instead.
    ok(data, &["hub", "link", "--host", "hub-1.example.net"]);
    assert!(ok(data, &["hub", "list"]).contains("hub-1.example.net"));

    let status = server.stop();
    assert!(status.success(), "SIGTERM ends the server with status 0, got {status:?}");
    assert!(!data.join("serve.json").exists(), "a stopped server no longer announces itself");
    ok(data, &["hub", "link", "--host", "hub-2.example.net"]);
    let shown: Value = serde_json::from_str(&ok(data, &["instance", "show", "default", "--json"])).unwrap();
    assert_eq!(shown["linkedHubs"].as_array().unwrap().len(), 2, "linked on the data dir while stopped");
}
