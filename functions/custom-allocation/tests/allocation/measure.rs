//! Measurements (ignored by default; never asserted as absolute times). Run with
//! `cargo test -p dps-custom-allocation --release --test allocation -- --ignored --nocapture measure`.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use dps_core::allocator::CustomAllocator;
use dps_core::policy::PolicyRegistry;
use dps_custom_allocation::{Limits, Sandbox};
use serde_json::{Value, json};

use crate::support::*;

/// The tenant-prefix policy's logic, natively, as a webhook.
async fn tenant_webhook(body: axum::body::Bytes) -> String {
    let request: Value = serde_json::from_slice(&body).unwrap();
    let id = request["deviceRuntimeContext"]["registrationId"].as_str().unwrap().to_ascii_lowercase();
    let (tenant, label, interval) =
        if id.starts_with("acme-") { ("acme", "acme-hub", 60) } else { ("globex", "globex-hub", 300) };
    let hub = request["linkedHubs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|h| h.split('.').next() == Some(label))
        .unwrap()
        .to_string();
    json!({ "iotHubHostName": hub, "initialTwin": { "tags": { "tenant": tenant },
        "properties": { "desired": { "telemetryIntervalSecs": interval } } } })
    .to_string()
}

fn stats(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    let n = samples.len();
    (samples[n / 2], samples[n * 9 / 10], samples.iter().sum::<Duration>() / n as u32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly"]
async fn measure() {
    const N: usize = 2000;
    let module = example("tenant_prefix");
    let h = Harness::new();

    // Compile (validate + compile + instantiate_pre + ABI probe) on a fresh engine, then the cached path.
    let sandbox = Sandbox::new(Limits::default(), 16).unwrap();
    let t = Instant::now();
    let compiled = sandbox.compile(&module).unwrap();
    let compile = t.elapsed();
    let t = Instant::now();
    for _ in 0..100 {
        sandbox.compile(&module).unwrap();
    }
    let cached = t.elapsed() / 100;
    let t = Instant::now();
    for _ in 0..1000 {
        sandbox.instantiate_only(&compiled).unwrap();
    }
    let instantiate = t.elapsed() / 1000;

    h.upload("tenants", module.clone()).await;
    let addr = crate::webhook::serve(Router::new().route("/", post(tenant_webhook))).await;
    let strict = instance(true);
    let wasm_def = policy("tenants");
    let hook_def = webhook(&format!("http://{addr}/"));
    let req = request("acme-device-1", Some(json!({ "fw": "1.0" })), &HUBS);

    // Warm both paths, then interleave so both see the same machine load.
    for _ in 0..200 {
        h.allocator.allocate(&strict, &wasm_def, &typed(&req)).await.unwrap();
        h.allocator.allocate(&strict, &hook_def, &typed(&req)).await.unwrap();
    }
    let (mut wasm, mut hook) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for _ in 0..N {
        let t = Instant::now();
        let a = h.allocator.allocate(&strict, &wasm_def, &typed(&req)).await.unwrap();
        wasm.push(t.elapsed());
        let t = Instant::now();
        let b = h.allocator.allocate(&strict, &hook_def, &typed(&req)).await.unwrap();
        hook.push(t.elapsed());
        assert_eq!(a.iot_hub_host_name, b.iot_hub_host_name);
    }
    // Sandbox call alone (no spawn_blocking, no metadata lookup).
    let input = serde_json::to_vec(&req).unwrap();
    let mut bare = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        let run = sandbox.run(&compiled, &input);
        bare.push(t.elapsed());
        assert!(run.output.is_ok());
    }
    // The same on an engine with the on-demand allocator (no pool), for comparison.
    {
        let label = "on-demand allocator (no pool)";
        let pooled = Sandbox::new(Limits::default(), 0).unwrap();
        let compiled = pooled.compile(&module).unwrap();
        let t = Instant::now();
        for _ in 0..1000 {
            pooled.instantiate_only(&compiled).unwrap();
        }
        let inst = t.elapsed() / 1000;
        let mut runs = Vec::with_capacity(N);
        for _ in 0..N {
            let t = Instant::now();
            assert!(pooled.run(&compiled, &input).output.is_ok());
            runs.push(t.elapsed());
        }
        let (m, p90, _) = stats(runs);
        println!("{label}: instantiate {inst:?}; sandbox.run median {m:?}, p90 {p90:?}");
    }
    let trace = h.allocator.dry_run(&strict, "tenants", &typed(&req)).await.unwrap().trace;
    let (wm, w90, wavg) = stats(wasm);
    let (hm, h90, havg) = stats(hook);
    let (bm, b90, _) = stats(bare);
    println!("module: tenant_prefix.wasm, {} bytes", module.len());
    println!("compile (validate+compile+pre+probe), fresh engine: {compile:?}; cached by hash: {cached:?}");
    println!("instantiate from InstancePre (limited store, pooling allocator, 16 slots): {instantiate:?}");
    println!("sandbox.run alone (pooling): median {bm:?}, p90 {b90:?}");
    println!("allocate, wasm policy: median {wm:?}, p90 {w90:?}, mean {wavg:?}");
    println!(
        "allocate, local webhook (same logic, HTTP/1.1 keep-alive on 127.0.0.1): median {hm:?}, p90 {h90:?}, mean {havg:?}"
    );
    println!("ratio webhook/wasm (median): {:.1}x", hm.as_secs_f64() / wm.as_secs_f64());
    println!(
        "per call: fuel {} units, peak linear memory {} bytes, request {} bytes",
        trace.fuel_consumed,
        trace.peak_memory_bytes,
        input.len()
    );
}
