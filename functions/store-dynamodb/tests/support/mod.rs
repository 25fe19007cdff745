//! Shared fixture of the DynamoDB tests: one moto server per test binary, a fresh table per store, an
//! interceptor that counts DynamoDB calls, and an HTTP client that injects faults.
#![allow(dead_code, unused_imports)] // each test binary uses its own part of the fixture

mod dps;
mod faults;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::config::Builder;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use dps_core::store::EnrollmentStore;
use dps_store_dynamodb::{DynamoStore, create_table, http_client, retry_config};

pub use dps::DpsEnv;
pub use dps_test_support::moto_endpoint;
pub use faults::{Fault, FaultPlan};

/// Attempts per call in these tests (the production default).
pub const MAX_ATTEMPTS: u32 = dps_store_dynamodb::config::DEFAULT_MAX_ATTEMPTS;

/// An SDK configuration for the moto server: dummy credentials and region, the store's HTTP client, retry
/// settings, and timeouts loose enough for a loaded test machine.
pub fn sdk_config() -> Builder {
    aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(moto_endpoint())
        .http_client(http_client())
        .retry_config(retry_config(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        )
}

/// A store over a new table (a unique name per call) reached with `config`.
pub async fn store_with(config: Builder) -> DynamoStore {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let table = format!("dps-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let client = aws_sdk_dynamodb::Client::from_conf(config.build());
    create_table(&client, &table).await.expect("create the test table on moto");
    DynamoStore::new(client, table)
}

/// A store over a new table.
pub async fn store() -> DynamoStore {
    store_with(sdk_config()).await
}

/// DynamoDB operations seen by the SDK, per call (`operations`) and per HTTP attempt (`attempts`).
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    operations: Arc<Mutex<Vec<String>>>,
    attempts: Arc<Mutex<Vec<String>>>,
}

impl CallLog {
    /// Operation names since the last reset, in call order.
    pub fn operations(&self) -> Vec<String> {
        self.operations.lock().unwrap().clone()
    }

    /// Operation names of every HTTP attempt (retries included) since the last reset.
    pub fn attempts(&self) -> Vec<String> {
        self.attempts.lock().unwrap().clone()
    }

    /// Forget what was seen.
    pub fn reset(&self) {
        self.operations.lock().unwrap().clear();
        self.attempts.lock().unwrap().clear();
    }
}

/// Marks an operation whose first attempt was seen (the config bag lives as long as one operation).
#[derive(Debug)]
struct Seen;

impl Storable for Seen {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "CallLog"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // `X-Amz-Target: DynamoDB_20120810.PutItem`
        let target = context.request().headers().get("x-amz-target").unwrap_or("?");
        let name = target.rsplit('.').next().unwrap_or(target).to_string();
        if cfg.load::<Seen>().is_none() {
            cfg.interceptor_state().store_put(Seen);
            self.operations.lock().unwrap().push(name.clone());
        }
        self.attempts.lock().unwrap().push(name);
        Ok(())
    }
}

/// A store whose calls are logged and whose HTTP attempts go through `plan`.
pub async fn instrumented_store() -> (DynamoStore, CallLog, FaultPlan) {
    let log = CallLog::default();
    let plan = FaultPlan::default();
    let config = sdk_config().interceptor(log.clone()).http_client(plan.client(http_client()));
    let store = store_with(config).await;
    log.reset();
    (store, log, plan)
}
