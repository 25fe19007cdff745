//! Our /policies extension and /config/webhookSigningKey, through the router with a real `PolicyAllocator`
//! (wasmtime) over a temporary directory.

use std::path::{Path, PathBuf};

use axum::http::Method;
use base64::Engine;
use dps_core::sas;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::*;

fn policies_workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies")
}

/// An example policy built by scripts/setup/wasm.sh. A missing module fails the test: never skipped.
fn example(name: &str) -> Vec<u8> {
    let path = policies_workspace().join("target/wasm32-unknown-unknown/release").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("example policy {} is missing ({e}): run scripts/setup/wasm.sh to build the policies", path.display())
    })
}

/// A hand-written adversarial fixture, assembled from `policies/fixtures/{name}.wat`.
fn fixture(name: &str) -> Vec<u8> {
    let path = policies_workspace().join("fixtures").join(format!("{name}.wat"));
    wat::parse_file(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()))
}

const WASM: &str = "application/wasm";

/// Every file under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() { found.extend(files_under(&path)) } else { found.push(path) }
    }
    found
}

fn sample(registration_id: &str, payload: Value, hubs: Option<&[&str]>) -> Value {
    let mut request = json!({
        "individualEnrollment": { "registrationId": registration_id, "attestation": { "type": "symmetricKey" } },
        "deviceRuntimeContext": { "registrationId": registration_id, "symmetricKey": {}, "payload": payload },
    });
    if let Some(hubs) = hubs {
        request["linkedHubs"] = json!(hubs);
    }
    request
}

#[test]
fn the_upload_limit_is_the_policy_hosts_module_limit() {
    assert_eq!(dps_api::MAX_POLICY_BYTES, dps_custom_allocation::Limits::default().module_bytes);
    assert_eq!(dps_api::MAX_BODY_BYTES, 96 * 1024, "every other route keeps Azure's limit");
}

#[tokio::test]
async fn upload_list_get_dry_run_and_delete() {
    let h = Harness::with_policies().await;
    let module = example("route_by_payload");
    let got = h.send(h.service(&h.a, Method::PUT, "/policies/by-region").raw(module.clone(), WASM)).await;
    got.assert_ok(200);
    let info = got.body.clone();
    assert_eq!(info["name"], "by-region");
    assert_eq!(info["sha256"], hex(&Sha256::digest(&module)));
    assert_eq!(info["size"], module.len());
    assert_eq!(info["abiVersion"], 1);
    let exports: Vec<&str> = info["exports"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    for export in ["memory", "dps_abi_version", "dps_alloc", "dps_allocate"] {
        assert!(exports.contains(&export), "exports {exports:?} lack {export}");
    }
    assert!(info["uploadedDateTimeUtc"].as_str().is_some_and(|t| t.ends_with('Z')));

    // A module with parameters in its content type, and a second name, case-insensitive collection.
    h.send(h.service(&h.a, Method::PUT, "/Policies/tenants/").raw(example("tenant_prefix"), "Application/WASM; x=1"))
        .await
        .assert_ok(200);
    let got = h.send(h.service(&h.a, Method::GET, "/policies")).await;
    got.assert_ok(200);
    let mut names: Vec<&str> = got.body.as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["by-region", "tenants"]);
    let got = h.send(h.service(&h.a, Method::GET, "/POLICIES/BY-REGION")).await;
    got.assert_ok(200);
    assert_eq!(got.body["sha256"], info["sha256"], "names are case-insensitive");
    // api-version is optional here, checked when sent.
    h.send(h.service_as_given(&h.a, Method::GET, "/policies/by-region")).await.assert_ok(200);
    h.send(h.service_as_given(&h.a, Method::GET, "/policies?api-version=1999-01-01")).await.assert_error(400, 400001);

    // Dry run: the decision, with the trace.
    let hubs = ["hub-eu.example.net", "hub-us.example.net"];
    let got = h
        .send(h.service(&h.a, Method::POST, "/policies/by-region/dryrun").json(&sample(
            "dev-1",
            json!({ "region": "EU" }),
            Some(&hubs),
        )))
        .await;
    got.assert_ok(200);
    assert_eq!(got.body["status"], "assigned", "{}", got.body);
    assert_eq!(got.body["allocation"]["iotHubHostName"], "hub-eu.example.net");
    assert_eq!(got.body["allocation"]["payload"], json!({ "routedBy": "region", "region": "eu" }));
    let trace = &got.body["trace"];
    assert!(trace["fuelConsumed"].as_u64().unwrap() > 0);
    assert_eq!(trace["fuelLimit"], 20_000_000);
    assert!(trace["durationMicros"].is_u64() && trace["peakMemoryBytes"].as_u64().unwrap() > 0);
    assert_eq!(trace["logs"], json!(["dev-1 -> hub-eu.example.net (region eu)"]));
    assert_eq!(trace["logsTruncated"], false);

    // Without linkedHubs the instance's hubs are offered (hub-a only): the policy rejects the device.
    let got = h
        .send(h.service(&h.a, Method::POST, "/policies/by-region/dryRun").json(&sample(
            "dev-1",
            json!({ "region": "eu" }),
            None,
        )))
        .await;
    got.assert_ok(200);
    assert_eq!(got.body["status"], "failed");
    assert_eq!(got.body["errorCode"], 400_241);
    assert_eq!(
        got.body["errorMessage"],
        "Custom allocation policy rejected the device: no linked hub serves region 'eu'"
    );
    // A dry run needs a request with a registration ID, as JSON.
    h.send(h.service(&h.a, Method::POST, "/policies/by-region/dryRun").json(&json!({ "linkedHubs": [] })))
        .await
        .assert_error(400, 400004);
    h.send(h.service(&h.a, Method::POST, "/policies/by-region/dryRun")).await.assert_error(400, 400002);
    h.send(h.service(&h.a, Method::POST, "/policies/by-region/dryRun").raw("{}", "text/plain"))
        .await
        .assert_error(415, 415001);
    h.send(h.service(&h.a, Method::POST, "/policies/nothing/dryRun").json(&sample(
        "dev-1",
        json!({ "region": "eu" }),
        None,
    )))
    .await
    .assert_error(404, 404001);

    // The other instance sees none of it.
    let got = h.send(h.service(&h.b, Method::GET, "/policies")).await;
    got.assert_ok(200);
    assert_eq!(got.body, json!([]));
    h.send(h.service(&h.b, Method::GET, "/policies/by-region")).await.assert_error(404, 404001);
    h.send(h.service(&h.b, Method::DELETE, "/policies/by-region")).await.assert_error(404, 404001);

    // Delete: 204, then gone.
    let got = h.send(h.service(&h.a, Method::DELETE, "/policies/By-Region")).await;
    got.assert_ok(204);
    assert!(got.raw.is_empty());
    h.send(h.service(&h.a, Method::DELETE, "/policies/by-region")).await.assert_error(404, 404001);
    h.send(h.service(&h.a, Method::GET, "/policies/by-region")).await.assert_error(404, 404001);
    let got = h.send(h.service(&h.a, Method::GET, "/policies")).await;
    assert_eq!(got.body.as_array().unwrap().len(), 1);
    h.send(h.service(&h.a, Method::GET, "/policies/by-region/other")).await.assert_error(404, 404000);
    h.send(h.service(&h.a, Method::POST, "/policies")).await.assert_error(405, 405001);
}

#[tokio::test]
async fn a_hostile_policy_fails_its_own_dry_run_and_nothing_else() {
    let h = Harness::with_policies().await;
    h.send(h.service(&h.a, Method::PUT, "/policies/spin").raw(fixture("infinite-loop"), WASM)).await.assert_ok(200);
    h.send(h.service(&h.a, Method::PUT, "/policies/weights").raw(example("weighted_capacity"), WASM))
        .await
        .assert_ok(200);
    let hubs = ["big-large.example.net", "tiny-small.example.net"];
    let spin =
        h.send(h.service(&h.a, Method::POST, "/policies/spin/dryRun").json(&sample("dev-1", json!({}), Some(&hubs))));
    let good = h.send(h.service(&h.a, Method::POST, "/policies/weights/dryRun").json(&sample(
        "dev-2",
        json!({ "n": 1 }),
        Some(&hubs),
    )));
    let (spin, good) = tokio::join!(spin, good);
    spin.assert_ok(200);
    assert_eq!(spin.body["status"], "failed");
    assert_eq!(spin.body["errorCode"], 400_243);
    assert_eq!(spin.body["errorMessage"], "Custom allocation policy ran out of fuel (20000000 units)");
    assert!(spin.body["trace"]["fuelConsumed"].as_u64().unwrap() >= 20_000_000);
    good.assert_ok(200);
    assert_eq!(good.body["status"], "assigned", "{}", good.body);
    assert_eq!(good.body["allocation"]["payload"]["echo"], json!({ "n": 1 }));
    assert_eq!(good.body["allocation"]["payload"]["totalWeight"], 6);
    // Still healthy.
    h.send(h.service(&h.a, Method::GET, "/policies/spin")).await.assert_ok(200);
}

#[tokio::test]
async fn refused_uploads_store_nothing() {
    let h = Harness::with_policies().await;
    let put = |name: &str| h.service(&h.a, Method::PUT, &format!("/policies/{name}"));

    // Wrong or missing content type: 415, whatever the body.
    let module = example("route_by_payload");
    let got = h.send(put("p").raw(module.clone(), "application/octet-stream")).await;
    got.assert_error(415, 415001);
    assert_eq!(got.body["message"], "The request body must be application/wasm");
    h.send(put("p").raw(module.clone(), "")).await.assert_error(415, 415001);
    h.send(put("p").json(&json!({ "module": "AGFzbQ==" }))).await.assert_error(415, 415001);

    // Modules the host refuses: 400 with the reason.
    let got = h.send(put("p").raw(b"\0asm\x01\0\0\0garbage".to_vec(), WASM)).await;
    got.assert_error(400, 400004);
    assert_eq!(
        got.body["message"],
        "The module is not valid WebAssembly within the sandbox limits: unexpected end-of-file (at offset 0xa)"
    );
    let got = h.send(put("p").raw(fixture("imports-wasi"), WASM)).await;
    got.assert_error(400, 400004);
    assert!(got.body["message"].as_str().unwrap().contains("policies may not use WASI"), "{}", got.body);
    let got = h.send(put("p").raw(fixture("missing-exports"), WASM)).await;
    got.assert_error(400, 400004);
    assert!(got.body["message"].as_str().unwrap().contains("missing the export 'dps_allocate'"), "{}", got.body);
    h.send(put("p").raw(Vec::new(), WASM)).await.assert_error(400, 400002);
    h.send(put("bad%20name").raw(module.clone(), WASM)).await.assert_error(400, 400004);
    h.send(put("..").raw(module.clone(), WASM)).await.assert_error(400, 400004);

    // Over the module limit: 413 by Content-Length before reading, and while reading without one.
    let mut big = module.clone();
    big.resize(dps_api::MAX_POLICY_BYTES + 1, 0);
    let got = h.send(put("p").raw(big.clone(), WASM)).await;
    got.assert_error(413, 413001);
    assert_eq!(got.body["message"], "The request body is larger than 4 MiB");
    h.send(put("p").raw(big, WASM).without_length()).await.assert_error(413, 413001);

    // Nothing was stored.
    let got = h.send(h.service(&h.a, Method::GET, "/policies")).await;
    got.assert_ok(200);
    assert_eq!(got.body, json!([]));
    h.send(h.service(&h.a, Method::GET, "/policies/p")).await.assert_error(404, 404001);
    assert_eq!(files_under(&h.policy_dir), Vec::<PathBuf>::new(), "no module or metadata written");

    // The raised limit is the upload's alone: a 200 KB garbage module reaches validation (400, not 413), while
    // a dry run or any other route still stops at 96 KB.
    let mut padded = b"\0asm\x01\0\0\0".to_vec();
    padded.resize(200 * 1024, 0xff);
    h.send(put("p").raw(padded, WASM)).await.assert_error(400, 400004);
    let big_json = json!({ "deviceRuntimeContext": { "registrationId": "d", "payload": "x".repeat(100 * 1024) } });
    h.send(h.service(&h.a, Method::POST, "/policies/p/dryRun").json(&big_json)).await.assert_error(413, 413001);
    let got = h
        .send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").raw(vec![b' '; 100 * 1024], "application/json"))
        .await;
    got.assert_error(413, 413001);
    assert_eq!(got.body["message"], "The request body is larger than 96 KB");
    assert_eq!(files_under(&h.policy_dir), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn policies_need_the_service_config_right() {
    let h = Harness::with_policies().await;
    h.send(h.service(&h.a, Method::PUT, "/policies/p").raw(example("tenant_prefix"), WASM)).await.assert_ok(200);
    let key = sas::generate_key();
    h.send(h.service(&h.a, Method::PUT, "/config/authorizationPolicies/enroller").json(&json!({
        "rights": ["EnrollmentRead", "EnrollmentWrite", "RegistrationStatusRead", "RegistrationStatusWrite"],
        "primaryKey": key,
    })))
    .await
    .assert_ok(200);
    let token = sas::token(&h.a.host, &key, in_an_hour(), Some("enroller")).unwrap();
    let call = |method: Method, path: &str| {
        Call::new(method, path).header("host", h.a.host.clone()).header("authorization", token.clone())
    };
    // The key works for what it may do...
    h.send(call(Method::POST, "/enrollments/query?api-version=2021-10-01").json(&json!({ "query": "*" })))
        .await
        .assert_ok(200);
    // ...and not for policies.
    let dry = sample("acme-1", json!({}), None);
    for got in [
        h.send(call(Method::PUT, "/policies/other").raw(example("tenant_prefix"), WASM)).await,
        h.send(call(Method::GET, "/policies")).await,
        h.send(call(Method::GET, "/policies/p")).await,
        h.send(call(Method::POST, "/policies/p/dryRun").json(&dry)).await,
        h.send(call(Method::DELETE, "/policies/p")).await,
        h.send(call(Method::GET, "/config/webhookSigningKey")).await,
    ] {
        got.assert_error(401, 401002);
    }
    // No token at all.
    h.send(Call::new(Method::GET, "/policies").header("host", h.a.host.clone())).await.assert_error(401, 401002);
    // Nothing changed.
    let got = h.send(h.service(&h.a, Method::GET, "/policies")).await;
    assert_eq!(got.body.as_array().unwrap().len(), 1);
    assert_eq!(got.body[0]["name"], "p");
}

#[tokio::test]
async fn without_a_policy_registry_the_routes_say_so() {
    let h = Harness::new().await;
    let got = h.send(h.service(&h.a, Method::GET, "/policies")).await;
    got.assert_error(400, 400004);
    assert_eq!(got.body["message"], "WebAssembly policies are not available in this deployment");
}

#[tokio::test]
async fn the_webhook_signing_key_is_readable_with_service_config() {
    let h = Harness::new().await;
    let got = h.send(h.service(&h.a, Method::GET, "/config/webhooksigningkey")).await;
    got.assert_ok(200);
    let key = got.body["webhookSigningKey"].as_str().expect("a key").to_string();
    assert_eq!(got.body.as_object().unwrap().len(), 1);
    let bytes = base64::engine::general_purpose::STANDARD.decode(&key).expect("base64");
    assert!(bytes.len() >= 32, "a key of {} bytes", bytes.len());
    // It is the instance's own, stable, and different per instance; /config still does not show it.
    let again = h.send(h.service(&h.a, Method::GET, "/config/webhookSigningKey?api-version=2021-10-01")).await;
    assert_eq!(again.body["webhookSigningKey"], key.as_str());
    let other = h.send(h.service(&h.b, Method::GET, "/config/webhookSigningKey")).await;
    other.assert_ok(200);
    assert_ne!(other.body["webhookSigningKey"], key.as_str());
    let config = h.send(h.service(&h.a, Method::GET, "/config")).await;
    assert!(config.body.get("webhookSigningKey").is_none());
    assert!(!String::from_utf8_lossy(&config.raw).contains(&key));
    h.send(h.service(&h.a, Method::PUT, "/config/webhookSigningKey").json(&json!({}))).await.assert_error(405, 405001);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
