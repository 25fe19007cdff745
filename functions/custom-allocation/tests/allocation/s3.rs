//! S3 module storage against moto's S3 server (feature `s3`; dps-test-support's moto, once per binary; moto
//! missing fails the tests with the setup hint, never skipped).

use std::sync::Arc;

use dps_core::allocator::CustomAllocator;
use dps_core::policy::PolicyRegistry;
use dps_custom_allocation::codes::POLICY_NOT_FOUND;
use dps_custom_allocation::s3::S3Storage;
use dps_custom_allocation::{ModuleStorage, PolicyAllocator, PolicySettings};

use crate::support::*;

fn endpoint() -> String {
    dps_test_support::moto_endpoint()
}

async fn storage(bucket: &str) -> Arc<S3Storage> {
    let storage = S3Storage::for_emulator(&endpoint(), bucket);
    storage.create_bucket().await.unwrap();
    Arc::new(storage)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_storage_round_trips_modules_and_metadata() {
    let storage = storage("policies-a").await;
    assert!(storage.get_module("00").await.unwrap().is_none());
    assert!(storage.get_policy("0ne00000001", "x").await.unwrap().is_none());
    assert!(storage.list_policies("0ne00000001").await.unwrap().is_empty());

    let allocator = PolicyAllocator::new(storage.clone(), PolicySettings::default()).unwrap();
    let info = allocator.upload(&instance(false), "Tenants", example("tenant_prefix")).await.unwrap();
    assert_eq!(storage.get_module(&info.sha256).await.unwrap().unwrap(), example("tenant_prefix"));
    assert_eq!(allocator.list(&instance(false)).await.unwrap(), vec![info.clone()]);

    // A cold allocator over the same bucket loads and compiles the module from S3.
    let cold = PolicyAllocator::new(storage.clone(), PolicySettings::default()).unwrap();
    let r =
        cold.allocate(&instance(false), &policy("tenants"), &typed(&request("globex-1", None, &HUBS))).await.unwrap();
    assert_eq!(r.iot_hub_host_name, "globex-hub.example.net");

    assert!(allocator.delete(&instance(false), "TENANTS").await.unwrap());
    assert!(!allocator.delete(&instance(false), "tenants").await.unwrap());
    let gone =
        allocator.allocate(&instance(false), &policy("tenants"), &typed(&request("globex-1", None, &HUBS))).await;
    assert_eq!(gone.unwrap_err().code, POLICY_NOT_FOUND);
    assert!(storage.get_module(&info.sha256).await.unwrap().is_some(), "modules outlive names");
}
