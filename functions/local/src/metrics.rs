//! `--metrics-listen`: the core's measurements as Prometheus series (prometheus-client, the Prometheus
//! project's Rust client) served as text at `GET /metrics` on a plain-HTTP listener of its own. Off by default;
//! meant for loopback or a private network (it carries no secrets, and asks for no credential).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use dps_core::metrics::{
    CustomAllocationRun, FrontDoor, Metrics, Outcome, Written, allocation_policy_label, attestation_label,
    status_class, status_label,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// What Prometheus is told it scrapes (prometheus-client writes OpenMetrics text).
const CONTENT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistrationLabels {
    outcome: &'static str,
    attestation: &'static str,
    allocation_policy: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    error_code: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CustomLabels {
    mechanism: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    front_door: &'static str,
    status_class: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds() -> Histogram {
    // 0.25 ms to ~4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

fn fuel() -> Histogram {
    // 1,000 to ~262 million instructions (the default budget is 20 million).
    Histogram::new(exponential_buckets(1_000.0, 4.0, 10))
}

/// The series, and the registry that writes them out.
pub struct Prometheus {
    registry: Registry,
    registrations: Family<RegistrationLabels, Counter>,
    registration_errors: Family<ErrorLabels, Counter>,
    hub_failures: Family<ErrorLabels, Counter>,
    registration_seconds: Histograms<OutcomeLabels>,
    custom_seconds: Histograms<CustomLabels>,
    custom_fuel: Histograms<CustomLabels>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Histograms<RequestLabels>,
}

impl Prometheus {
    /// Every series registered under the `dps_` prefix, none observed yet.
    pub fn new() -> Self {
        let mut this = Self {
            registry: Registry::with_prefix("dps"),
            registrations: Family::default(),
            registration_errors: Family::default(),
            hub_failures: Family::default(),
            registration_seconds: Family::new_with_constructor(seconds),
            custom_seconds: Family::new_with_constructor(seconds),
            custom_fuel: Family::new_with_constructor(fuel),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(seconds),
        };
        let r = &mut this.registry;
        r.register(
            "registrations",
            "Registration records written, by status, attestation and allocation policy",
            this.registrations.clone(),
        );
        r.register("registration_errors", "Failed registrations by error code", this.registration_errors.clone());
        r.register(
            "hub_failures",
            "Registrations failed by a hub connector call, by error code",
            this.hub_failures.clone(),
        );
        r.register(
            "registration_duration_seconds",
            "Register calls by outcome, start to answer",
            this.registration_seconds.clone(),
        );
        r.register("custom_allocation_duration_seconds", "Custom allocation calls", this.custom_seconds.clone());
        r.register("custom_allocation_fuel", "Fuel consumed by WebAssembly policy runs", this.custom_fuel.clone());
        r.register("requests", "Requests answered, by front door and status class", this.requests.clone());
        r.register(
            "request_duration_seconds",
            "Requests by front door and status class, to the response head",
            this.request_seconds.clone(),
        );
        this
    }

    /// The text a scrape gets.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

impl Metrics for Prometheus {
    fn registration_written(&self, w: &Written) {
        let labels = RegistrationLabels {
            outcome: status_label(w.status),
            attestation: attestation_label(w.attestation),
            allocation_policy: allocation_policy_label(w.allocation_policy),
        };
        self.registrations.get_or_create(&labels).inc();
        if let Some(error_code) = w.error_code {
            self.registration_errors.get_or_create(&ErrorLabels { error_code }).inc();
            if w.hub_failed() {
                self.hub_failures.get_or_create(&ErrorLabels { error_code }).inc();
            }
        }
    }

    fn registration_ended(&self, outcome: Outcome, latency: Duration) {
        self.registration_seconds
            .get_or_create(&OutcomeLabels { outcome: outcome.as_str() })
            .observe(latency.as_secs_f64());
    }

    fn custom_allocation(&self, run: &CustomAllocationRun) {
        let labels = CustomLabels {
            mechanism: run.mechanism.as_str(),
            result: if run.error_code.is_some() { "failed" } else { "ok" },
        };
        self.custom_seconds.get_or_create(&labels).observe(run.duration.as_secs_f64());
        if let Some(fuel) = run.fuel_consumed {
            self.custom_fuel.get_or_create(&labels).observe(fuel as f64);
        }
    }

    fn request(&self, front_door: FrontDoor, status: u16, latency: Duration) {
        let labels = RequestLabels { front_door: front_door.as_str(), status_class: status_class(status) };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds.get_or_create(&labels).observe(latency.as_secs_f64());
    }
}

/// Bind the metrics listener (before the server announces itself, so its address can be printed).
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen for metrics on {addr}"))
}

/// Serve `GET /metrics` on `listener` until the process ends (a scrape holds no state worth draining).
pub fn spawn(listener: TcpListener, metrics: Arc<Prometheus>) {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { ([(CONTENT_TYPE, CONTENT)], metrics.render()) }
        }),
    );
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!(error = %err, "metrics listener failed");
        }
    });
}
