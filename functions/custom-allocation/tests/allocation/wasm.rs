//! WebAssembly policies: the example policies decide as documented; every adversarial fixture fails only its
//! own call, with its exact code and message, while good calls run alongside.

use std::time::Duration;

use dps_custom_allocation::codes::*;
use dps_custom_allocation::{Limits, PolicySettings};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn route_by_payload_routes_by_region_and_explains_rejections() {
    let h = Harness::new();
    h.upload("by-region", example("route_by_payload")).await;

    let eu = h.run("by-region", &request("dev-1", Some(json!({ "region": "EU" })), &HUBS)).await.unwrap();
    assert_eq!(eu.iot_hub_host_name, "hub-eu.example.net");
    assert_eq!(eu.payload, Some(json!({ "routedBy": "region", "region": "eu" })));
    let us = h.run("by-region", &request("dev-2", Some(json!({ "region": "us" })), &HUBS)).await.unwrap();
    assert_eq!(us.iot_hub_host_name, "hub-us.example.net");

    assert_failure(
        h.run("by-region", &request("dev-3", None, &HUBS)).await,
        POLICY_REJECTED,
        "Custom allocation policy rejected the device: payload.region is required (a string such as \"eu\")",
    );
    assert_failure(
        h.run("by-region", &request("dev-4", Some(json!({ "region": "mars" })), &HUBS)).await,
        POLICY_REJECTED,
        "Custom allocation policy rejected the device: no linked hub serves region 'mars'",
    );
}

#[tokio::test]
async fn tenant_prefix_maps_tenants_to_hubs_with_initial_twin() {
    let h = Harness::new();
    h.upload("tenants", example("tenant_prefix")).await;

    let acme = h.run("tenants", &request("ACME-sensor-17", None, &HUBS)).await.unwrap();
    assert_eq!(acme.iot_hub_host_name, "acme-hub.example.net");
    assert_eq!(
        acme.initial_twin,
        Some(json!({ "tags": { "tenant": "acme" }, "properties": { "desired": { "telemetryIntervalSecs": 60 } } }))
    );
    let globex = h.run("tenants", &request("globex-9", None, &HUBS)).await.unwrap();
    assert_eq!(globex.iot_hub_host_name, "globex-hub.example.net");
    assert_eq!(globex.initial_twin.unwrap()["tags"]["tenant"], "globex");

    assert_failure(
        h.run("tenants", &request("initech-1", None, &HUBS)).await,
        POLICY_REJECTED,
        "Custom allocation policy rejected the device: registration ID 'initech-1' belongs to no known tenant",
    );
    // The tenant's hub is not offered (e.g. the enrollment's iotHubs exclude it): rejected, not misrouted.
    assert_failure(
        h.run("tenants", &request("acme-1", None, &["hub-a.example.net"])).await,
        POLICY_REJECTED,
        "Custom allocation policy rejected the device: tenant 'acme' has no linked hub",
    );
}

#[tokio::test]
async fn weighted_capacity_is_stable_weighted_and_echoes_the_payload() {
    let h = Harness::new();
    h.upload("weighted", example("weighted_capacity")).await;
    let hubs = ["big-large.example.net", "tiny-small.example.net", "hub-a.example.net"];

    let payload = json!({ "model": "x1", "fw": "1.2.3" });
    let first = h.run("weighted", &request("device-0", Some(payload.clone()), &hubs)).await.unwrap();
    let again = h.run("weighted", &request("device-0", Some(payload.clone()), &hubs)).await.unwrap();
    assert_eq!(first, again, "same device, same hubs: same decision");
    let echoed = first.payload.unwrap();
    assert_eq!(echoed["echo"], payload);
    assert_eq!(echoed["totalWeight"], 8);

    let mut counts = std::collections::HashMap::new();
    for i in 0..400 {
        let r = h.run("weighted", &request(&format!("device-{i}"), None, &hubs)).await.unwrap();
        *counts.entry(r.iot_hub_host_name).or_insert(0u32) += 1;
    }
    // Weights 5 : 2 : 1 of 400 devices: 250 / 100 / 50 expected; allow wide slack for the hash.
    let large = counts["big-large.example.net"];
    let small = counts["tiny-small.example.net"];
    assert!((190..=310).contains(&large), "large hub got {large} of 400: {counts:?}");
    assert!((20..=90).contains(&small), "small hub got {small} of 400: {counts:?}");
}

/// Run a fixture while good calls of another policy run concurrently; all good calls must succeed.
async fn adversarial(
    h: &Harness,
    fixture_name: &str,
) -> Result<dps_core::allocator::AllocationResponse, dps_core::allocator::AllocationFailure> {
    h.upload(fixture_name, fixture(fixture_name)).await;
    let bad = h.spawn_run(fixture_name, "victim".into());
    let good: Vec<_> = (0..8).map(|i| h.spawn_run("good", format!("ok-{i}"))).collect();
    for g in good {
        let r = g.await.unwrap().expect("a good call next to an adversarial one succeeds");
        assert_eq!(r.iot_hub_host_name, "hub-a.example.net");
    }
    bad.await.unwrap()
}

async fn harness_with_good(limits: Limits) -> Harness {
    let h = Harness::with_limits(limits);
    h.upload("good", fixture("first-hub")).await;
    h
}

/// Each adversarial fixture under the default limits (a fresh harness each): its own call fails with its exact
/// code and message, while good calls run alongside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversarial_fixtures_fail_only_their_own_call() {
    for (fixture_name, code, message) in [
        ("infinite-loop", POLICY_FUEL, "Custom allocation policy ran out of fuel (20000000 units)"),
        ("memory-bomb", POLICY_MEMORY, "Custom allocation policy exceeded its memory limit of 16777216 bytes"),
        ("deep-recursion", POLICY_TRAP, "Custom allocation policy trapped: call stack exhausted"),
        ("trap", POLICY_TRAP, "Custom allocation policy trapped: wasm trap: integer divide by zero"),
        (
            "huge-output",
            POLICY_OUTPUT_TOO_LARGE,
            "Custom allocation policy failed: its answer of 2097152 bytes exceeds the 65536-byte output limit",
        ),
        (
            "invalid-json",
            POLICY_BAD_OUTPUT,
            "Custom allocation policy answered with invalid JSON (expected ident at line 1 column 2)",
        ),
        ("reject", POLICY_REJECTED, "Custom allocation policy rejected the device: device not welcome"),
    ] {
        let h = harness_with_good(Limits::default()).await;
        assert_failure(adversarial(&h, fixture_name).await, code, message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn infinite_loop_with_plenty_of_fuel_hits_the_deadline() {
    let limits = Limits { fuel: u64::MAX / 2, deadline: Duration::from_millis(50), ..Limits::default() };
    let h = harness_with_good(limits).await;
    assert_failure(
        adversarial(&h, "infinite-loop").await,
        POLICY_DEADLINE,
        "Custom allocation policy exceeded its deadline of 50 ms",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_outside_linked_hubs_fails() {
    let h = harness_with_good(Limits::default()).await;
    // The answer passes the sandbox; the core's one check of every allocator's answer refuses it.
    let answer = adversarial(&h, "outside-hubs").await.expect("passed through");
    assert_failure(
        typed(&request("dev-1", None, &HUBS)).check_offered(answer),
        HUB_NOT_LINKED,
        "Custom allocation chose hub 'evil-hub.example.net', which is not one of the linked hubs offered",
    );
}

#[tokio::test]
async fn deleted_or_unknown_policy_fails_with_a_clear_code() {
    let h = harness_with_good(Limits::default()).await;
    assert_failure(
        h.run("nope", &request("d", None, &HUBS)).await,
        POLICY_NOT_FOUND,
        "Custom allocation policy 'nope' is not uploaded to this instance",
    );
    use dps_core::policy::PolicyRegistry;
    assert!(h.allocator.delete(&instance(false), "good").await.unwrap());
    assert_failure(
        h.run("good", &request("d", None, &HUBS)).await,
        POLICY_NOT_FOUND,
        "Custom allocation policy 'good' is not uploaded to this instance",
    );
    // Uploading it again brings the enrollments that name it back.
    h.upload("good", fixture("first-hub")).await;
    assert!(h.run("good", &request("d", None, &HUBS)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_one_compiled_module() {
    let h = Harness::new();
    h.upload("tenants", example("tenant_prefix")).await;
    let calls: Vec<_> = (0..64).map(|i| h.spawn_run("tenants", format!("acme-{i}"))).collect();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().iot_hub_host_name, "acme-hub.example.net");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_panic_fails_the_call_with_the_panic_message() {
    let h = harness_with_good(Limits::default()).await;
    h.upload("rust-panic", example("rust_panic")).await;
    let result = h.run("rust-panic", &request("d", None, &HUBS)).await;
    let failure = result.expect_err("a panic fails the call");
    assert_eq!(failure.code, POLICY_TRAP);
    assert!(
        failure.message.starts_with("Custom allocation policy trapped: panic: ")
            && failure.message.contains("payload.hub is always set"),
        "{}",
        failure.message
    );
    assert!(h.run("good", &request("d", None, &HUBS)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_works_longer_than_a_short_call_still_answers() {
    use dps_core::policy::PolicyRegistry;
    let h = Harness::new();
    h.upload("busy", fixture("busy-first-hub")).await;
    let answer = h.run("busy", &request("d-1", None, &HUBS)).await.expect("the busy policy answers");
    assert_eq!(answer.iot_hub_host_name, "hub-a.example.net");
    let dry = h.allocator.dry_run(&instance(false), "busy", &typed(&request("d-2", None, &HUBS))).await.unwrap();
    assert_eq!(dry.status, "assigned");
    assert!(dry.trace.fuel_consumed > 2_000_000, "fuel of the whole run: {}", dry.trace.fuel_consumed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_call_sees_what_the_previous_call_left_in_memory() {
    // One pool slot: every call reuses the same memory, reset in place between calls.
    let h = Harness::with(PolicySettings { pool_slots: 1, ..PolicySettings::default() });
    h.upload("remembers", fixture("remembers")).await;
    for i in 0..20 {
        let answer = h.run("remembers", &request(&format!("d-{i}"), None, &HUBS)).await;
        assert_eq!(answer.expect("the policy answers").iot_hub_host_name, "hub-a.example.net", "call {i}");
    }
}
