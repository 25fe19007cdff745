//! `PolicyAllocator`: the core's custom allocation port (WebAssembly policy or webhook, by definition) and its
//! policy registry port (upload, list, get, delete, dry run).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use dps_core::allocator::{AllocationCost, AllocationFailure, AllocationRequest, AllocationResponse, CustomAllocator};
use dps_core::model::{CustomAllocationDefinition, Instance};
use dps_core::policy::{DryRun, PolicyInfo, PolicyRegistry, PolicyTrace};
use dps_core::{Error, Result};
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::codes::{self, failure};
use crate::limits::Limits;
use crate::sandbox::{Compiled, ModuleError, Sandbox};
use crate::storage::ModuleStorage;
use crate::webhook::{WebhookSettings, Webhooks};

/// Settings of the allocator.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// Sandbox limits.
    pub limits: Limits,
    /// Webhook timeouts and bounds.
    pub webhooks: WebhookSettings,
    /// Sandbox calls at once (pooling allocator slots; 0 = on-demand allocator, unbounded). More callers wait.
    pub pool_slots: u32,
    /// How long a policy's name -> module mapping may be served from memory (other warm functions see an
    /// upload or delete after at most this long; the function that made the change sees it at once).
    pub metadata_ttl: Duration,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            webhooks: WebhookSettings::default(),
            pool_slots: 16,
            metadata_ttl: Duration::from_secs(5),
        }
    }
}

/// Fuel a call may use in place on the async task that needs it (about 0.1 ms of guest work here; the
/// tenant-prefix example uses about 43,000): a call that needs more is run again, with the full limits, off the task's
/// thread (`run_blocking`). Policies are deterministic, so the second run decides what the first would have.
const IN_PLACE_FUEL: u64 = 200_000;

/// Bytes reserved for an encoded request at once (a typical one is about 400): no regrowth on the way.
const REQUEST_CAPACITY: usize = 1024;

/// Policy metadata entries kept in memory before the cache starts over.
const METADATA_ENTRIES: usize = 10_000;

/// Policy names: 1..=64 of letters, digits, `-`, `_`, `.` (the core's name grammar), never `.` or `..` alone.
/// Checked here too because names become storage keys.
fn valid_name(name: &str) -> bool {
    dps_core::ids::validate_name("policy name", name).is_ok() && name != "." && name != ".."
}

fn invalid_name(name: &str) -> Error {
    Error::invalid(format!("Invalid policy name '{}'", dps_core::ids::printable(name)))
}

/// (ID scope, lowercase policy name).
type MetadataKey = (String, String);

/// When a policy's metadata was read, and what it was (`None`: no such policy).
type MetadataEntry = (Instant, Option<Arc<PolicyInfo>>);

/// Custom allocation by WebAssembly policies and webhooks, and the registry of policies.
pub struct PolicyAllocator {
    sandbox: Arc<Sandbox>,
    /// One permit per pool slot: sandbox work waits here rather than failing on an exhausted pool.
    slots: Arc<Semaphore>,
    storage: Arc<dyn ModuleStorage>,
    webhooks: Webhooks,
    metadata_ttl: Duration,
    metadata: Mutex<HashMap<MetadataKey, MetadataEntry>>,
}

impl PolicyAllocator {
    /// An allocator over `storage`: builds the engine (and its epoch ticker) and the webhook clients.
    pub fn new(storage: Arc<dyn ModuleStorage>, settings: PolicySettings) -> Result<Self> {
        let slots = settings.pool_slots;
        let sandbox = Sandbox::new(settings.limits, slots).map_err(|e| Error::internal(format!("wasm engine: {e}")))?;
        let permits = if slots == 0 { Semaphore::MAX_PERMITS } else { slots as usize };
        let webhooks = Webhooks::new(settings.webhooks).map_err(|e| Error::internal(format!("webhook client: {e}")))?;
        Ok(Self {
            sandbox: Arc::new(sandbox),
            slots: Arc::new(Semaphore::new(permits)),
            storage,
            webhooks,
            metadata_ttl: settings.metadata_ttl,
            metadata: Mutex::new(HashMap::new()),
        })
    }

    /// The sandbox (for measurements and tests).
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    async fn policy_info(&self, scope: &str, name: &str) -> Result<Option<Arc<PolicyInfo>>> {
        if !valid_name(name) {
            return Ok(None);
        }
        let key = (scope.to_string(), name.to_ascii_lowercase());
        if let Some((at, info)) = self.metadata.lock().unwrap_or_else(|e| e.into_inner()).get(&key)
            && at.elapsed() < self.metadata_ttl
        {
            return Ok(info.clone());
        }
        let info = self.storage.get_policy(scope, name).await?.map(Arc::new);
        self.remember(scope, name, info.clone());
        Ok(info)
    }

    fn remember(&self, scope: &str, name: &str, info: Option<Arc<PolicyInfo>>) {
        let key = (scope.to_string(), name.to_ascii_lowercase());
        let mut cache = self.metadata.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= METADATA_ENTRIES {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), info));
    }

    /// The compiled module of a policy: from the cache, else loaded from storage and compiled.
    async fn compiled(&self, info: &PolicyInfo) -> Result<Arc<Compiled>, AllocationFailure> {
        if let Some(hit) = self.sandbox.cached(&info.sha256) {
            return Ok(hit);
        }
        let host =
            |why: String| failure(codes::POLICY_HOST, format!("Custom allocation policy could not be loaded: {why}"));
        if info.sha256.len() != 64 || !info.sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(host("its metadata names no valid module hash".into()));
        }
        let bytes = self
            .storage
            .get_module(&info.sha256)
            .await
            .map_err(|e| host(e.to_string()))?
            .ok_or_else(|| host(format!("module {} is missing from storage", info.sha256)))?;
        // Storage is addressed by content: what comes back must be what was uploaded (a tampered or corrupted
        // object never runs, and never poisons the cache under another hash).
        if crate::sandbox::sha256_hex(&bytes) != info.sha256 {
            tracing::error!(sha256 = %info.sha256, "stored policy module does not match its hash");
            return Err(host(format!("module {} in storage does not match its hash", info.sha256)));
        }
        let _slot = self.slots.acquire().await.map_err(|e| host(e.to_string()))?;
        let sandbox = self.sandbox.clone();
        tokio::task::spawn_blocking(move || sandbox.compile(&bytes))
            .await
            .map_err(|e| host(e.to_string()))?
            .map_err(|e| host(e.to_string()))
    }

    /// Evaluate the named policy on `request`: its decision and the trace (the hub is checked by the caller).
    async fn evaluate(
        &self,
        instance: &Instance,
        name: &str,
        request: &AllocationRequest,
    ) -> (Result<AllocationResponse, AllocationFailure>, PolicyTrace) {
        let trace = PolicyTrace { fuel_limit: self.sandbox.limits().fuel, ..PolicyTrace::default() };
        let info = match self.policy_info(&instance.id_scope, name).await {
            Ok(Some(info)) => info,
            Ok(None) => {
                let message = format!("Custom allocation policy '{name}' is not uploaded to this instance");
                return (Err(failure(codes::POLICY_NOT_FOUND, message)), trace);
            }
            Err(e) => return (Err(failure(codes::POLICY_HOST, format!("Policy storage failed: {e}"))), trace),
        };
        let compiled = match self.compiled(&info).await {
            Ok(c) => c,
            Err(f) => return (Err(f), trace),
        };
        let mut input = Vec::with_capacity(REQUEST_CAPACITY);
        let input = match serde_json::to_writer(&mut input, request) {
            Ok(()) => input,
            Err(e) => return (Err(failure(codes::POLICY_HOST, format!("Cannot encode the request: {e}"))), trace),
        };
        let Ok(_slot) = self.slots.acquire().await else {
            return (Err(failure(codes::POLICY_HOST, "The sandbox is shutting down")), trace);
        };
        // Most policies finish in a few microseconds: run them in place, on the task's own thread (a hand-off
        // costs more than the call). One that needs more than `IN_PLACE_FUEL` is run again from the start where
        // it cannot hold up other tasks.
        let started = Instant::now();
        let run = match self.sandbox.run_short(&compiled, &input, IN_PLACE_FUEL) {
            Some(run) => run,
            None => match run_blocking(self.sandbox.clone(), move |sandbox| sandbox.run(&compiled, &input)).await {
                Ok(mut run) => {
                    run.trace.duration_micros = crate::sandbox::micros(started.elapsed());
                    run
                }
                Err(e) => return (Err(failure(codes::POLICY_HOST, format!("The sandbox failed: {e}"))), trace),
            },
        };
        let decision = run.output.and_then(|bytes| interpret(&bytes));
        (decision, run.trace)
    }
}

/// Run CPU-bound sandbox work without stalling other tasks: on a multi-threaded runtime in place (the worker
/// hands its other tasks to a peer; cheaper than a hop to the blocking pool, measured), else on the blocking
/// pool. Calls are bounded by fuel and the epoch deadline either way.
async fn run_blocking<T: Send + 'static>(
    sandbox: Arc<Sandbox>,
    work: impl FnOnce(&Sandbox) -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        Ok(tokio::task::block_in_place(|| work(&sandbox)))
    } else {
        tokio::task::spawn_blocking(move || work(&sandbox)).await
    }
}

/// A policy's answer as the ABI defines it: an AllocationResponse, or a rejection.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    /// Present (even as `null`) means a rejection, whatever else the answer holds.
    #[serde(default, deserialize_with = "present")]
    rejection: Option<Value>,
    iot_hub_host_name: Option<String>,
    initial_twin: Option<Value>,
    payload: Option<Value>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    serde::Deserialize::deserialize(d).map(Some)
}

/// Turn a policy's answer into a response or a rejection.
fn interpret(bytes: &[u8]) -> Result<AllocationResponse, AllocationFailure> {
    let bad = |why: String| failure(codes::POLICY_BAD_OUTPUT, format!("Custom allocation policy answered with {why}"));
    // Straight into the answer's fields; anything unusual (bad JSON, a field of the wrong type, a duplicate or
    // missing hub) goes the general way below, which words the error.
    let answer = match serde_json::from_slice::<Answer>(bytes) {
        Ok(Answer { rejection: Some(rejection), .. }) => return Err(rejected(&rejection)),
        Ok(Answer { rejection: None, iot_hub_host_name: Some(hub), initial_twin, payload }) => {
            Some(AllocationResponse { iot_hub_host_name: hub, initial_twin, payload })
        }
        _ => None,
    };
    if let Some(response) = answer {
        if response.iot_hub_host_name.trim().is_empty() {
            return Err(bad("an empty iotHubHostName".into()));
        }
        return Ok(response);
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("invalid JSON ({e})")))?;
    if let Some(rejection) = value.get("rejection") {
        return Err(rejected(rejection));
    }
    crate::webhook::response_from_value(value).map_err(bad)
}

fn rejected(rejection: &Value) -> AllocationFailure {
    let message = rejection.get("message").and_then(Value::as_str).unwrap_or("no reason given");
    let message: String = message.chars().filter(|c| !c.is_control()).take(512).collect();
    failure(codes::POLICY_REJECTED, format!("Custom allocation policy rejected the device: {message}"))
}

#[async_trait]
impl CustomAllocator for PolicyAllocator {
    async fn check_definition(&self, instance: &Instance, definition: &CustomAllocationDefinition) -> Result<()> {
        if let Some(name) = &definition.policy_name
            && !valid_name(name)
        {
            return Err(invalid_name(name));
        }
        if let Some(name) = &definition.policy_name
            && self.storage.get_policy(&instance.id_scope, name).await?.is_none()
        {
            return Err(Error::invalid(format!("No policy named '{name}' is uploaded to this instance")));
        }
        if let Some(url) = &definition.webhook_url {
            self.webhooks.check_url(instance, url).map_err(|f| Error::invalid(f.message))?;
        }
        Ok(())
    }

    async fn allocate(
        &self,
        instance: &Instance,
        definition: &CustomAllocationDefinition,
        request: &AllocationRequest,
    ) -> Result<AllocationResponse, AllocationFailure> {
        self.allocate_measured(instance, definition, request).await.0
    }

    async fn allocate_measured(
        &self,
        instance: &Instance,
        definition: &CustomAllocationDefinition,
        request: &AllocationRequest,
    ) -> (Result<AllocationResponse, AllocationFailure>, AllocationCost) {
        if let Some(name) = &definition.policy_name {
            let (decision, trace) = self.evaluate(instance, name, request).await;
            tracing::debug!(
                scope = %instance.id_scope,
                policy = %name,
                fuel = trace.fuel_consumed,
                micros = trace.duration_micros,
                logs = ?trace.logs,
                ok = decision.is_ok(),
                "custom allocation policy"
            );
            // A module that never ran (not found, not compiled) consumed nothing worth a sample.
            let ran = trace.fuel_consumed > 0;
            return (decision, AllocationCost { fuel_consumed: ran.then_some(trace.fuel_consumed) });
        }
        let none = AllocationCost::default();
        if let Some(url) = &definition.webhook_url {
            // The core checks the answer against the hubs offered, for webhooks and policies alike.
            return (self.webhooks.call(instance, url, request).await, none);
        }
        (Err(failure(codes::NO_DEFINITION, "Custom allocation has no definition (webhook or policy)")), none)
    }
}

#[async_trait]
impl PolicyRegistry for PolicyAllocator {
    async fn upload(&self, instance: &Instance, name: &str, module: Vec<u8>) -> Result<PolicyInfo> {
        if !valid_name(name) {
            return Err(invalid_name(name));
        }
        let _slot = self.slots.acquire().await.map_err(|e| Error::internal(e.to_string()))?;
        let sandbox = self.sandbox.clone();
        let (compiled, module) = tokio::task::spawn_blocking(move || (sandbox.compile(&module), module))
            .await
            .map_err(|e| Error::internal(format!("compile task: {e}")))?;
        let compiled = compiled.map_err(|e| match e {
            ModuleError::TooLarge { .. } => Error::PayloadTooLarge(e.to_string()),
            ModuleError::Invalid(_) => Error::invalid(e.to_string()),
        })?;
        self.storage.put_module(&compiled.sha256, &module).await?;
        let info = PolicyInfo {
            name: name.to_string(),
            sha256: compiled.sha256.clone(),
            size: compiled.size,
            abi_version: compiled.abi_version,
            exports: compiled.exports.clone(),
            imports: compiled.imports.clone(),
            uploaded_date_time_utc: time::OffsetDateTime::now_utc(),
        };
        self.storage.put_policy(&instance.id_scope, &info).await?;
        self.remember(&instance.id_scope, name, Some(Arc::new(info.clone())));
        Ok(info)
    }

    async fn list(&self, instance: &Instance) -> Result<Vec<PolicyInfo>> {
        self.storage.list_policies(&instance.id_scope).await
    }

    async fn get(&self, instance: &Instance, name: &str) -> Result<Option<PolicyInfo>> {
        if !valid_name(name) {
            return Ok(None);
        }
        self.storage.get_policy(&instance.id_scope, name).await
    }

    async fn delete(&self, instance: &Instance, name: &str) -> Result<bool> {
        if !valid_name(name) {
            return Ok(false);
        }
        let deleted = self.storage.delete_policy(&instance.id_scope, name).await?;
        self.remember(&instance.id_scope, name, None);
        Ok(deleted)
    }

    async fn dry_run(&self, instance: &Instance, name: &str, request: &AllocationRequest) -> Result<DryRun> {
        if !valid_name(name) || self.storage.get_policy(&instance.id_scope, name).await?.is_none() {
            return Err(Error::not_found(format!("No policy named '{name}'")));
        }
        // A dry run shows what a registration would get: the core's check of the hub included.
        let (decision, trace) = self.evaluate(instance, name, request).await;
        let decision = decision.and_then(|r| request.check_offered(r));
        Ok(match decision {
            Ok(allocation) => DryRun {
                status: "assigned".into(),
                allocation: Some(allocation),
                error_code: None,
                error_message: None,
                trace,
            },
            Err(f) => DryRun {
                status: "failed".into(),
                allocation: None,
                error_code: Some(f.code),
                error_message: Some(f.message),
                trace,
            },
        })
    }
}
