//! The provisioning service: the use cases behind the device API and the service API.

mod allocate;
mod bulk;
mod cache;
mod certificates;
mod config;
mod device;
mod enrollments;
mod groups;
mod hubs;
mod instances;
mod limiter;
mod policies;
mod provision;
mod registrations;
mod sas_attestation;
mod tpm;
mod validation;
mod x509;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::allocator::CustomAllocator;
use crate::error::{Error, Result};
use crate::events::{Event, EventSink};
use crate::model::{EnrollmentGroup, Instance, OperationCount, OperationKind, Right};
use crate::sas::SasToken;
use crate::store::{EnrollmentStore, PageRequest, Store};

pub use bulk::{BulkItemResult, BulkMode, BulkOutcome, MAX_BULK_ITEMS};
pub use certificates::MAX_CA_CERTIFICATES;
pub use config::InstanceConfig;
pub use device::{DeviceCaller, RegisterRequest, StatusRequest};
pub use enrollments::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
pub use instances::{NewInstance, OWNER_POLICY};
pub use limiter::FailureBudget;

/// Deployment-wide settings of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Region this deployment serves from, for the lowest-latency policy (e.g. `eu-west-1`).
    pub serving_region: Option<String>,
    /// How long instance configuration and enrollment groups may be served from memory.
    pub cache_ttl: Duration,
    /// How far ahead a SAS token's expiry (`se`) may be; tokens beyond it are refused (401).
    pub max_token_lifetime: Duration,
    /// Most enrollment groups one registration is checked against (in group ID order): bounds the HMACs one
    /// unauthenticated request can cost.
    pub max_groups_tried: usize,
    /// Most enrollment groups an instance may have; creating one more is refused.
    pub max_groups: usize,
    /// Failed device attestations allowed per ID scope (per process) before 429.
    pub failed_attestations_per_scope: FailureBudget,
    /// Failed device attestations allowed per client address (per process) before 429.
    pub failed_attestations_per_address: FailureBudget,
    /// How long the key a TPM challenge issues stays usable (for the signed register, once, and status lookups).
    pub tpm_challenge_ttl: Duration,
}

/// Default of [`Settings::tpm_challenge_ttl`]: 5 minutes.
pub const DEFAULT_TPM_CHALLENGE_TTL: Duration = Duration::from_secs(300);

/// Default of [`Settings::max_groups`] and [`Settings::max_groups_tried`].
pub const DEFAULT_MAX_GROUPS: usize = 10_000;

/// Default of [`Settings::max_token_lifetime`]: 30 days.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

impl Default for Settings {
    fn default() -> Self {
        Self {
            serving_region: None,
            cache_ttl: Duration::from_secs(5),
            max_token_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
            max_groups_tried: DEFAULT_MAX_GROUPS,
            max_groups: DEFAULT_MAX_GROUPS,
            failed_attestations_per_scope: FailureBudget { burst: 1000.0, per_second: 200.0 },
            failed_attestations_per_address: FailureBudget { burst: 20.0, per_second: 2.0 },
            tpm_challenge_ttl: DEFAULT_TPM_CHALLENGE_TTL,
        }
    }
}

impl Settings {
    fn max_token_secs(&self) -> i64 {
        i64::try_from(self.max_token_lifetime.as_secs()).unwrap_or(i64::MAX)
    }
}

/// The service: use cases over a store, with an optional custom allocator.
#[derive(Clone)]
pub struct Dps {
    store: Arc<dyn Store>,
    allocator: Option<Arc<dyn CustomAllocator>>,
    policies: Option<Arc<dyn crate::policy::PolicyRegistry>>,
    settings: Arc<Settings>,
    cache: Arc<cache::ConfigCache>,
    failures: Arc<limiter::FailureLimiter>,
    hubs: Arc<crate::hubs::HubConnectors>,
    secrets: Option<Arc<dyn crate::hubs::SecretBox>>,
    events: Option<Arc<dyn EventSink>>,
    metrics: Arc<dyn crate::metrics::Metrics>,
}

/// An authenticated service API caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The instance the caller acts on.
    pub instance: Arc<Instance>,
    /// Rights of the policy that signed the token.
    pub rights: Vec<Right>,
    /// Name of that policy.
    pub key_name: String,
}

impl Caller {
    /// Fail with `Unauthorized` unless the caller holds `right`.
    pub fn require(&self, right: Right) -> Result<()> {
        if self.rights.contains(&right) {
            Ok(())
        } else {
            Err(Error::unauthorized(format!("The policy '{}' does not grant the {right:?} right", self.key_name)))
        }
    }

    fn scope(&self) -> &str {
        &self.instance.id_scope
    }
}

impl Dps {
    /// A service over `store` with no custom allocator (the `custom` policy is refused).
    pub fn new(store: Arc<dyn Store>, settings: Settings) -> Self {
        let cache = Arc::new(cache::ConfigCache::new(settings.cache_ttl));
        let failures = Arc::new(limiter::FailureLimiter::new(
            settings.failed_attestations_per_scope,
            settings.failed_attestations_per_address,
        ));
        Self {
            store,
            allocator: None,
            policies: None,
            settings: Arc::new(settings),
            cache,
            failures,
            hubs: Arc::new(crate::hubs::HubConnectors::none()),
            secrets: None,
            events: None,
            metrics: Arc::new(crate::metrics::NoMetrics),
        }
    }

    /// Write the registries of linked hubs with these connectors (without, every hub is record only).
    pub fn with_hubs(mut self, hubs: crate::hubs::HubConnectors) -> Self {
        self.hubs = Arc::new(hubs);
        self
    }

    /// Seal hub connector credentials with this box (without, a hub cannot be linked with credentials).
    pub fn with_secret_box(mut self, secrets: Arc<dyn crate::hubs::SecretBox>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Tell this sink about every durable change (docs/events.md); without, no events are made.
    pub fn with_events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = Some(sink);
        self
    }

    /// Hand the event of a change that has committed to the sink, if there is one (`event` is built only
    /// then). A sink failure is logged: the change stands and the caller's answer does not change.
    pub(super) async fn emit(&self, event: impl FnOnce() -> Event) {
        let Some(sink) = &self.events else { return };
        let event = event();
        if let Err(err) = sink.publish(std::slice::from_ref(&event)).await {
            tracing::warn!(event_id = %event.id, event_type = event.event_type.name(), "event not delivered: {err}");
        }
    }

    /// Report measurements to this sink (without, nothing is measured).
    pub fn with_metrics(mut self, metrics: Arc<dyn crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The measurements sink (the front doors report their requests to it).
    pub fn metrics(&self) -> &Arc<dyn crate::metrics::Metrics> {
        &self.metrics
    }

    /// Enable the `custom` policy with this allocator.
    pub fn with_allocator(mut self, allocator: Arc<dyn CustomAllocator>) -> Self {
        self.allocator = Some(allocator);
        self
    }

    /// The store behind the service.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Authenticate a service API request: the instance is found by `host` (the Host header, port ignored),
    /// the token must be signed by one of its policies and cover that host.
    /// `path` is the request path: a token whose resource names a path (`host/enrollments`) covers only requests
    /// under it, matched by whole segments.
    pub async fn authenticate_service(&self, host: &str, path: &str, authorization: Option<&str>) -> Result<Caller> {
        let host_name = strip_port(host).to_ascii_lowercase();
        // Everything that needs no instance is checked first, and an unknown host is refused as a bad signature
        // is: outsiders cannot tell which service host names exist.
        let denied = || Error::unauthorized("SAS token signature is invalid");
        let header = authorization.ok_or_else(|| Error::unauthorized("Missing Authorization header"))?;
        let token = SasToken::parse(header)?;
        token.check_expiry(now().unix_timestamp(), self.settings.max_token_secs())?;
        if !service_resource_covers(&token.resource, &host_name, path) {
            return Err(Error::unauthorized("SAS token resource does not match this service"));
        }
        let key_name = token.key_name.clone().ok_or_else(|| Error::unauthorized("SAS token has no skn"))?;
        let instance = self.instance_by_host(&host_name).await?.ok_or_else(denied)?;
        let policy = instance
            .authorization_policies
            .iter()
            .find(|p| p.key_name.eq_ignore_ascii_case(&key_name))
            .ok_or_else(denied)?;
        if !token.signed_with_any([policy.primary_key.as_str(), policy.secondary_key.as_str()]) {
            return Err(denied());
        }
        Ok(Caller { rights: policy.rights.clone(), key_name: policy.key_name.clone(), instance })
    }

    async fn instance_by_scope(&self, scope: &str) -> Result<Option<Arc<Instance>>> {
        self.cached_instance(self.cache.instance_by_scope(scope), || self.store.instance_by_scope(scope)).await
    }

    async fn instance_by_host(&self, host: &str) -> Result<Option<Arc<Instance>>> {
        self.cached_instance(self.cache.instance_by_host(host), || self.store.instance_by_host(host)).await
    }

    /// The cache's `hit`, else what `read` finds in the store (then cached, unless the cache was cleared since).
    async fn cached_instance<F>(
        &self,
        hit: Option<Arc<Instance>>,
        read: impl FnOnce() -> F,
    ) -> Result<Option<Arc<Instance>>>
    where
        F: std::future::Future<Output = Result<Option<Instance>>>,
    {
        if hit.is_some() {
            return Ok(hit);
        }
        let generation = self.cache.generation();
        let found = read().await?.map(Arc::new);
        if let Some(instance) = &found {
            self.cache.put_instance(instance.clone(), generation);
        }
        Ok(found)
    }

    /// All enrollment groups of an instance (cached, see [`Settings::cache_ttl`]).
    async fn groups(&self, scope: &str) -> Result<Arc<groups::GroupSet>> {
        if let Some(hit) = self.cache.groups(scope) {
            return Ok(hit);
        }
        let generation = self.cache.generation();
        let mut all = Vec::new();
        let mut page = PageRequest { max_items: MAX_PAGE_SIZE, continuation: None };
        loop {
            let got = self.store.page::<EnrollmentGroup>(scope, page.clone()).await?;
            all.extend(got.items);
            match got.continuation {
                Some(next) => page.continuation = Some(next),
                None => break,
            }
        }
        let all = Arc::new(groups::GroupSet::new(all));
        self.cache.put_groups(scope, all.clone(), generation);
        Ok(all)
    }

    /// Run a billable service API call, counting it concurrently with the work (one round trip, not two).
    async fn metered<T>(&self, caller: &Caller, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let (_, result) = futures::join!(self.meter(caller.scope(), OperationKind::ServiceOperation), work);
        result
    }

    /// Run a billable service API write: `work` commits the call's count with the first write it makes
    /// ([`CallMeter::take`]); a call that wrote nothing is counted on its own afterwards.
    async fn metered_write<T, F>(&self, caller: &Caller, work: impl FnOnce(Arc<CallMeter>) -> F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let meter = Arc::new(CallMeter::default());
        let result = work(meter.clone()).await;
        if meter.unspent() {
            self.meter(caller.scope(), OperationKind::ServiceOperation).await;
        }
        result
    }

    /// Count billable operations; a failure is logged, never shown to the caller whose work succeeded.
    async fn meter(&self, scope: &str, kind: OperationKind) {
        let date = today();
        if let Err(err) = self.store.add_operations(scope, &date, kind, 1).await {
            tracing::warn!(scope, ?kind, error = %err, "could not count operation");
        }
    }
}

/// The count of one billable service call, committed in the same atomic write as the first write the call
/// makes, so that a crash cannot leave a write without its count (or a count without its write).
#[derive(Debug, Default)]
pub(crate) struct CallMeter {
    spent: std::sync::atomic::AtomicBool,
}

impl CallMeter {
    /// The count for the write about to be made (None once an earlier write of the call carried it). Give it
    /// back with [`CallMeter::unused`] if that write fails.
    pub(crate) fn take(&self) -> Option<OperationCount> {
        let first = !self.spent.swap(true, std::sync::atomic::Ordering::SeqCst);
        first.then(|| OperationCount { date: today(), kind: OperationKind::ServiceOperation, count: 1 })
    }

    /// The write that took `count` did not happen.
    pub(crate) fn unused(&self, count: Option<OperationCount>) {
        if count.is_some() {
            self.spent.store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn unspent(&self) -> bool {
        !self.spent.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The current time in UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Today's UTC date as `YYYY-MM-DD`.
pub fn today() -> String {
    let d = now().date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether a service token's (decoded) resource covers the request: `host[:port][/path]`, the host compared
/// case-insensitively, the path a whole-segment prefix of the (percent-decoded) request path.
fn service_resource_covers(resource: &str, host_name: &str, request_path: &str) -> bool {
    let resource = resource.trim_start_matches("https://").trim_start_matches("http://");
    let (authority, prefix) = resource.split_once('/').unwrap_or((resource, ""));
    if !strip_port(authority).eq_ignore_ascii_case(host_name) {
        return false;
    }
    let segments = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().to_ascii_lowercase())
            .collect()
    };
    let (prefix, path) = (segments(prefix), segments(request_path));
    // A path-scoped token covers an attestationmechanism call (which returns keys) only if it names it: a token
    // for `host/enrollments/x` reads the enrollment, not its keys. A token for the whole host covers everything.
    let reveals_keys = path.last().is_some_and(|s| s == "attestationmechanism");
    if reveals_keys && !prefix.is_empty() && prefix.len() < path.len() {
        return false;
    }
    prefix.len() <= path.len() && prefix.iter().zip(&path).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ports_are_ignored() {
        assert_eq!(strip_port("localhost:8443"), "localhost");
        assert_eq!(strip_port("localhost"), "localhost");
        assert_eq!(strip_port("[::1]:443"), "::1");
    }

    #[test]
    fn service_resource_matching() {
        let host = "mydps.example.net";
        assert!(service_resource_covers("mydps.example.net", host, "/enrollments/a"));
        assert!(service_resource_covers("MyDps.Example.net:443/enrollments", host, "/enrollments/a"));
        assert!(service_resource_covers("mydps.example.net/enrollments/", host, "/Enrollments"));
        assert!(!service_resource_covers("mydps.example.net/enrollments", host, "/enrollmentGroups/a"));
        assert!(!service_resource_covers("mydps.example.net/enroll", host, "/enrollments/a"));
        assert!(!service_resource_covers(
            "mydps.example.net/registrations/dev-1",
            host,
            "/config/authorizationPolicies"
        ));
        assert!(service_resource_covers("mydps.example.net/registrations/dev%2D1", host, "/registrations/dev-1"));
        // Keys need a token for the whole host or for the attestationmechanism path itself.
        assert!(!service_resource_covers(
            "mydps.example.net/enrollments/x",
            host,
            "/enrollments/x/attestationmechanism"
        ));
        assert!(!service_resource_covers("mydps.example.net/enrollments", host, "/enrollments/x/attestationmechanism"));
        assert!(service_resource_covers(
            "mydps.example.net/enrollments/x/attestationmechanism",
            host,
            "/enrollments/x/attestationmechanism"
        ));
        assert!(service_resource_covers("mydps.example.net", host, "/enrollments/x/attestationmechanism"));
        assert!(!service_resource_covers("mydps.example.net.evil", host, "/"));
        assert!(!service_resource_covers("other.example.net", host, "/"));
    }
}
