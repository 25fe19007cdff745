//! The fixed cost of a custom allocation call, and its parts: encoding the request, a limited store and an
//! instance from the pool, the whole sandbox call, and `PolicyAllocator::allocate` as a registration makes it
//! (from a task on a multi-threaded runtime's worker, metadata cache hit, module cache hit). Three modules: a
//! constant answer (`policies/fixtures/constant.wat`: what the host alone costs), the same answer from a module
//! that grows its memory by a page on every call (`first-hub.wat`: what a growth costs the host), and the
//! tenant-prefix example (a real policy built with the SDK, which parses the request with serde_json in the
//! guest). For comparison, a webhook that gives the constant answer, served by axum on 127.0.0.1 over a
//! kept-alive HTTP/1.1 connection (the best case for a webhook: no network, no TLS).
//!
//! `cargo bench --workspace --bench call` (after `scripts/setup/wasm.sh`). See docs/PERFORMANCE.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dps_core::allocator::{AllocationRequest, CustomAllocator};
use dps_core::model::{CustomAllocationDefinition, Instance};
use dps_custom_allocation::PolicyAllocator;
use serde_json::json;
use tokio::runtime::Runtime;

#[allow(dead_code)]
#[path = "../tests/allocation/support.rs"]
mod support;
use support::*;

/// `iters` allocations from one task on a runtime worker (where a registration's handler runs), timed there.
fn allocate_on_worker(
    runtime: &Runtime,
    allocator: &Arc<PolicyAllocator>,
    instance: &Instance,
    definition: &CustomAllocationDefinition,
    request: &AllocationRequest,
    iters: u64,
) -> Duration {
    let (allocator, instance, definition, request) =
        (allocator.clone(), instance.clone(), definition.clone(), request.clone());
    runtime
        .block_on(runtime.spawn(async move {
            let started = Instant::now();
            for _ in 0..iters {
                let answer = allocator.allocate(&instance, &definition, &request).await;
                assert!(answer.is_ok(), "{answer:?}");
            }
            started.elapsed()
        }))
        .expect("bench task")
}

fn custom_allocation(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let harness = Harness::new();
    let modules = [
        ("constant", fixture("constant")),
        ("first_hub", fixture("first-hub")),
        ("tenant_prefix", example("tenant_prefix")),
    ];
    runtime.block_on(async {
        for (name, module) in &modules {
            harness.upload(name, module.clone()).await;
        }
    });
    let allocator = harness.allocator.clone();
    let sandbox = allocator.sandbox().clone();
    let instance = instance(false);
    let request = typed(&request("acme-device-1", Some(json!({ "fw": "1.0" })), &HUBS));
    let input = serde_json::to_vec(&request).unwrap();

    let mut group = c.benchmark_group("custom_allocation");
    group.bench_function("encode_request", |b| b.iter(|| serde_json::to_vec(&request).unwrap()));
    for (name, module) in &modules {
        let compiled = sandbox.compile(module).unwrap();
        group.bench_function(format!("instantiate/{name}"), |b| b.iter(|| sandbox.instantiate_only(&compiled)));
        group.bench_function(format!("sandbox_run/{name}"), |b| {
            b.iter(|| assert!(sandbox.run(&compiled, &input).output.is_ok()))
        });
        let definition = policy(name);
        group.bench_function(format!("allocate/{name}"), |b| {
            b.iter_custom(|iters| allocate_on_worker(&runtime, &allocator, &instance, &definition, &request, iters))
        });
    }
    let addr = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = || async { r#"{"iotHubHostName":"hub-a.example.net","payload":{"from":"webhook"}}"# };
        let router = axum::Router::new().route("/", axum::routing::post(answer));
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        addr
    });
    let definition = webhook(&format!("http://{addr}/"));
    let instance = support::instance(true);
    group.bench_function("allocate/constant_webhook", |b| {
        b.iter_custom(|iters| allocate_on_worker(&runtime, &allocator, &instance, &definition, &request, iters))
    });
    group.finish();
}

criterion_group!(benches, custom_allocation);
criterion_main!(benches);
