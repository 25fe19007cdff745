//! Upload validation, metadata, storage, dry run and definition checks.

use std::sync::Arc;

use dps_core::Error;
use dps_core::allocator::CustomAllocator;
use dps_core::policy::PolicyRegistry;
use dps_custom_allocation::codes::*;
use dps_custom_allocation::sandbox::sha256_hex;
use dps_custom_allocation::{DirStorage, PolicyAllocator, PolicySettings};
use serde_json::json;

use crate::support::*;

async fn refused(module: Vec<u8>) -> Error {
    let h = Harness::new();
    h.allocator.upload(&instance(false), "bad", module).await.expect_err("upload must be refused")
}

#[tokio::test]
async fn uploads_that_break_the_abi_are_refused_with_the_reason() {
    assert_eq!(
        refused(fixture("imports-wasi")).await,
        Error::invalid(
            "The module imports WASI (wasi_snapshot_preview1.fd_write); policies may not use WASI: build for \
             wasm32-unknown-unknown with the policy SDK"
        )
    );
    assert_eq!(
        refused(fixture("imports-unknown")).await,
        Error::invalid("The module imports env.clock_now, which the host does not provide (only dps.log)")
    );
    assert_eq!(
        refused(fixture("missing-exports")).await,
        Error::invalid("The module is missing the export 'dps_allocate' (func (param i32 i32) (result i64))")
    );
    assert_eq!(
        refused(fixture("wrong-abi-version")).await,
        Error::invalid("The module declares ABI version 99; this host speaks version 1")
    );
    assert_eq!(
        refused(b"\0asm\x01\0\0\0garbage".to_vec()).await,
        Error::invalid(
            "The module is not valid WebAssembly within the sandbox limits: unexpected end-of-file (at offset 0xa)"
        )
    );
}

#[tokio::test]
async fn oversize_and_overweight_modules_are_refused() {
    // A valid module padded with a 5 MiB custom section: over the 4 MiB module limit.
    let mut module = fixture("first-hub");
    let pad = vec![0u8; 5 << 20];
    module.push(0); // custom section id
    let mut len = (pad.len() + 2) as u32;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        module.push(if len == 0 { byte } else { byte | 0x80 });
        if len == 0 {
            break;
        }
    }
    module.extend_from_slice(&[1, b'x']);
    module.extend_from_slice(&pad);
    let size = module.len();
    assert_eq!(
        refused(module).await,
        Error::PayloadTooLarge(format!("The module is {size} bytes; the limit is 4194304 bytes"))
    );

    // A module whose initial memory (1000 pages) is over the per-call memory limit never starts.
    let greedy = wat::parse_str(
        r#"(module (memory (export "memory") 1000)
            (func (export "dps_abi_version") (result i32) (i32.const 1))
            (func (export "dps_alloc") (param i32) (result i32) (i32.const 0))
            (func (export "dps_allocate") (param i32 i32) (result i64) (i64.const 0)))"#,
    )
    .unwrap();
    assert_eq!(
        refused(greedy).await,
        Error::invalid(
            "The module is not valid WebAssembly within the sandbox limits: memory has a minimum byte size of \
             65536000 which exceeds the limit of 0x1000000 bytes"
        )
    );
}

#[tokio::test]
async fn metadata_is_listed_and_survives_a_cold_start() {
    let h = Harness::new();
    let module = example("tenant_prefix");
    let info = h.allocator.upload(&instance(false), "Tenants", module.clone()).await.unwrap();
    assert_eq!(info.sha256, sha256_hex(&module));
    assert_eq!(info.size, module.len() as u64);
    assert_eq!(info.abi_version, 1);
    assert_eq!(info.imports, vec!["dps.log".to_string()]);
    for export in ["memory", "dps_abi_version", "dps_alloc", "dps_allocate"] {
        assert!(info.exports.iter().any(|e| e == export), "{export} in {:?}", info.exports);
    }
    h.upload("first", fixture("first-hub")).await;
    let names: Vec<String> = h.allocator.list(&instance(false)).await.unwrap().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["first", "Tenants"]);
    assert_eq!(h.allocator.get(&instance(false), "tenants").await.unwrap(), Some(info.clone()));
    assert!(h.dir.path().join("policies/modules").join(format!("{}.wasm", info.sha256)).exists());

    // A new process over the same directory: metadata and module come from storage, compiled on first use.
    let cold =
        PolicyAllocator::new(Arc::new(DirStorage::new(h.dir.path().join("policies"))), PolicySettings::default())
            .unwrap();
    assert!(cold.sandbox().cached(&info.sha256).is_none());
    let r = cold.allocate(&instance(false), &policy("TENANTS"), &typed(&request("acme-1", None, &HUBS))).await.unwrap();
    assert_eq!(r.iot_hub_host_name, "acme-hub.example.net");
    assert!(cold.sandbox().cached(&info.sha256).is_some());

    // Other instances see none of it.
    let mut other = instance(false);
    other.id_scope = "0ne00000002".into();
    assert!(h.allocator.list(&other).await.unwrap().is_empty());
    assert!(h.allocator.get(&other, "tenants").await.unwrap().is_none());
}

#[tokio::test]
async fn a_tampered_stored_module_never_runs() {
    let h = Harness::new();
    let info = h.allocator.upload(&instance(false), "tenants", example("tenant_prefix")).await.unwrap();
    // Replace the stored bytes by another valid policy: the content no longer matches its address.
    let path = h.dir.path().join("policies/modules").join(format!("{}.wasm", info.sha256));
    std::fs::write(&path, fixture("first-hub")).unwrap();
    let cold =
        PolicyAllocator::new(Arc::new(DirStorage::new(h.dir.path().join("policies"))), PolicySettings::default())
            .unwrap();
    let r = cold.allocate(&instance(false), &policy("tenants"), &typed(&request("acme-1", None, &HUBS))).await;
    let failure = r.unwrap_err();
    assert_eq!(failure.code, dps_custom_allocation::codes::POLICY_HOST);
    assert!(failure.message.contains("does not match its hash"), "{}", failure.message);
    assert!(cold.sandbox().cached(&info.sha256).is_none(), "nothing cached under the policy's hash");
}

#[tokio::test]
async fn an_sdk_policy_runs_within_its_initial_memory() {
    // The SDK's allocator serves a call's heap from the module's initial memory: a growth would cost the host
    // two mprotect calls on every registration (docs/PERFORMANCE.md, "Custom allocation's fixed cost").
    let module = example("tenant_prefix");
    let compiled = wasmtime::Module::new(&wasmtime::Engine::default(), &module).unwrap();
    let pages = compiled.exports().find_map(|e| e.ty().memory().map(|m| m.minimum())).unwrap();
    let h = Harness::new();
    h.upload("tenants", module).await;
    let request = typed(&request("acme-device-1", Some(json!({ "fw": "1.0" })), &HUBS));
    let run = h.allocator.dry_run(&instance(false), "tenants", &request).await.unwrap();
    assert_eq!(run.status, "assigned");
    assert_eq!(run.trace.peak_memory_bytes, pages * 65536, "{:?}", run.trace);
}

#[tokio::test]
async fn dry_run_returns_the_decision_and_a_trace() {
    let h = Harness::new();
    h.upload("by-region", example("route_by_payload")).await;
    let run = h
        .allocator
        .dry_run(&instance(false), "by-region", &typed(&request("dev-1", Some(json!({ "region": "eu" })), &HUBS)))
        .await
        .unwrap();
    assert_eq!(run.status, "assigned");
    assert_eq!(run.allocation.unwrap().iot_hub_host_name, "hub-eu.example.net");
    assert!(run.trace.fuel_consumed > 0 && run.trace.fuel_consumed < run.trace.fuel_limit, "{:?}", run.trace);
    assert!(run.trace.peak_memory_bytes >= 65536, "{:?}", run.trace);
    assert_eq!(run.trace.logs, ["dev-1 -> hub-eu.example.net (region eu)"]);

    let failed =
        h.allocator.dry_run(&instance(false), "by-region", &typed(&request("dev-2", None, &HUBS))).await.unwrap();
    assert_eq!(failed.status, "failed");
    assert_eq!(failed.error_code, Some(POLICY_REJECTED));

    // Logging is bounded: 1000 lines asked, 32 kept.
    h.upload("flood", fixture("log-flood")).await;
    let flood = h.allocator.dry_run(&instance(false), "flood", &typed(&request("d", None, &HUBS))).await.unwrap();
    assert_eq!(flood.status, "assigned");
    assert_eq!(flood.trace.logs.len(), 32);
    assert!(flood.trace.logs_truncated);

    assert!(matches!(
        h.allocator.dry_run(&instance(false), "missing", &typed(&request("d", None, &HUBS))).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn definitions_are_checked_when_enrollments_are_written() {
    let h = Harness::new();
    h.upload("present", fixture("first-hub")).await;
    let strict = instance(false);
    assert!(h.allocator.check_definition(&strict, &policy("present")).await.is_ok());
    assert_eq!(
        h.allocator.check_definition(&strict, &policy("absent")).await,
        Err(Error::invalid("No policy named 'absent' is uploaded to this instance"))
    );
    assert!(h.allocator.check_definition(&strict, &webhook("https://alloc.example.com/api?code=x")).await.is_ok());
    assert_eq!(
        h.allocator.check_definition(&strict, &webhook("http://alloc.example.com/")).await,
        Err(Error::invalid("Custom allocation webhook URL is invalid: it must use https"))
    );
    assert!(h.allocator.check_definition(&strict, &webhook("https://10.0.0.5/alloc")).await.is_err());
    assert!(h.allocator.check_definition(&instance(true), &webhook("http://127.0.0.1:9/")).await.is_ok());
}

#[tokio::test]
async fn names_that_are_not_names_never_reach_storage() {
    let h = Harness::new();
    h.upload("ok", fixture("first-hub")).await;
    for name in ["../ok", "..", "a/b", "", "x".repeat(65).as_str()] {
        assert!(h.allocator.upload(&instance(false), name, fixture("first-hub")).await.is_err(), "{name}");
        assert!(h.allocator.get(&instance(false), name).await.unwrap().is_none(), "{name}");
        assert!(h.allocator.check_definition(&instance(false), &policy(name)).await.is_err(), "{name}");
        assert_eq!(h.run(name, &request("d", None, &HUBS)).await.unwrap_err().code, POLICY_NOT_FOUND, "{name}");
    }
}
