//! `dps-loadgen`: provisions devices through the real HTTPS device API of a running DPS (the local `dps` server
//! or a deployed stack's URL) and reports throughput, latency percentiles and errors.
//!
//! A run creates what it needs through the service API (a linked hub, then an enrollment group or one individual
//! enrollment per device, with symmetric keys or X.509 certificates), makes every device's token or certificate
//! before the clock starts, then measures
//! one of three things with `--concurrency` devices in flight: first-time registrations, re-registrations of
//! devices registered just before (untimed), or status polls of their registration operations. Answers that say
//! `assigning` are followed with status polls until the device is assigned. Connections are kept alive (one per
//! device slot, one request at a time) or opened fresh for every device, as a fleet of real devices would; an
//! X.509 device presents its certificate in the TLS handshake, so it always has a connection of its own.
//!
//! A benchmark tool: it asserts nothing about speed. See docs/PERFORMANCE.md.

pub mod certs;
pub mod client;
pub mod report;
pub mod setup;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use crate::certs::{Ca, KeyType, Keys};
use crate::client::{Connection, Endpoint};
use crate::report::{Latency, Progress, Report, process_cpu};
use crate::setup::{Attestation, Device, Service};

const DEVICE_API: &str = "api-version=2021-06-01";
/// How long a device follows `assigning` before the attempt counts as failed.
const ASSIGNING_DEADLINE: Duration = Duration::from_secs(60);

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// First-time registrations of new devices.
    First,
    /// Registrations of devices that are already registered (registered untimed first).
    Reregister,
    /// Status polls (`GET .../operations/{operationId}`) of registered devices (registered untimed first).
    Poll,
}

/// How devices connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Connect {
    /// One connection per device slot, reused for every device it serves.
    KeepAlive,
    /// A new TCP connection and full TLS handshake for every device (no session resumption).
    Fresh,
}

/// Command line of `dps-loadgen`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "dps-loadgen", version, about = "Provision devices against a running DPS and measure it")]
pub struct Options {
    /// Base URL of the device API.
    #[arg(long, default_value = "https://127.0.0.1:8443")]
    pub url: String,
    /// Base URL of the service API (defaults to --url). The calls carry the connection string's host name as Host.
    #[arg(long)]
    pub service_url: Option<String>,
    /// CA certificates to trust (PEM), such as `<data-dir>/tls/ca.pem` of a local server; default: the public
    /// web roots.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Connection string of the instance's service API (`dps instance show NAME`).
    #[arg(long, env = "DPS_CONNECTION_STRING", hide_env_values = true)]
    pub connection_string: String,
    /// ID scope of the instance.
    #[arg(long, env = "DPS_ID_SCOPE")]
    pub scope: String,
    /// Devices to provision.
    #[arg(long, short = 'n', default_value_t = 1000)]
    pub devices: usize,
    /// Devices in flight at once.
    #[arg(long, short = 'c', default_value_t = 8)]
    pub concurrency: usize,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::First)]
    pub mode: Mode,
    /// How devices connect [default: keep-alive; fresh for X.509, the only way a certificate device can].
    #[arg(long, value_enum)]
    pub connect: Option<Connect>,
    /// How devices attest.
    #[arg(long, value_enum, default_value_t = Attestation::Group)]
    pub attestation: Attestation,
    /// Key type of the X.509 certificates the run makes (its CA's and the devices').
    #[arg(long, value_enum, default_value_t = KeyType::P256)]
    pub key_type: KeyType,
    /// With `--attestation x509-group`: the group's signing certificate (PEM, a CA) to sign the devices'
    /// certificates with, instead of a CA generated for the run. Needs `--signing-key`.
    #[arg(long, requires = "signing_key")]
    pub signing_cert: Option<PathBuf>,
    /// The private key of `--signing-cert` (PKCS#8 PEM).
    #[arg(long, requires = "signing_cert")]
    pub signing_key: Option<PathBuf>,
    /// Link this hub first (the `/config/linkedHubs` extension); `--hub ''` links none (a deployed stack whose
    /// hubs are linked already).
    #[arg(long, default_value = "loadgen-hub.example.net")]
    pub hub: String,
    /// Other symmetric-key groups to create first, sorted before this run's group, to see what many groups cost
    /// a first registration (with `--attestation group`).
    #[arg(long, default_value_t = 0)]
    pub extra_groups: usize,
    /// Prefix of this run's enrollment group and device IDs (default: `loadgen-` and the start time).
    #[arg(long)]
    pub run_id: Option<String>,
    /// PID of a local server: report its CPU time (user + system, from /proc) per operation of the measured phase.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Write the report as JSON to this file (`-` for stdout).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// One device's outcome in the measured phase.
enum Outcome {
    Done { latency: Duration, operation_id: Option<String>, polls: usize },
    Failed { kind: String, detail: String },
}

/// The device API.
#[derive(Clone)]
struct Devices {
    endpoint: Endpoint,
    scope: String,
    connect: Connect,
}

impl Devices {
    /// Register, and follow `assigning` with status polls until assigned (or failed, or the deadline).
    async fn register(&self, conn: &mut Connection, device: &Device) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let path = format!("/{}/registrations/{}/register?{DEVICE_API}", self.scope, device.id);
        let auth = auth_header(device);
        let body = json!({"registrationId": device.id});
        let mut answer = conn.call("PUT", self.endpoint.host(), &path, &auth, Some(&body)).await?;
        let mut polls = 0;
        while answer.status == 202 && answer.body["status"] == "assigning" {
            if started.elapsed() > ASSIGNING_DEADLINE {
                return Ok(failed("assigning timeout", &answer.body));
            }
            let operation = answer.body["operationId"].as_str().unwrap_or_default().to_string();
            // The server's Retry-After, but at most a second: the point is to see when the device is assigned.
            let wait = Duration::from_secs(answer.retry_after.unwrap_or(1)).min(Duration::from_secs(1));
            tokio::time::sleep(wait).await;
            let path = format!("/{}/registrations/{}/operations/{operation}?{DEVICE_API}", self.scope, device.id);
            answer = conn.call("GET", self.endpoint.host(), &path, &auth, None).await?;
            polls += 1;
        }
        Ok(self.settle(answer, started, polls))
    }

    /// One status poll of the operation `operation_id`.
    async fn poll(&self, conn: &mut Connection, device: &Device, operation_id: &str) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let path = format!("/{}/registrations/{}/operations/{operation_id}?{DEVICE_API}", self.scope, device.id);
        let auth = auth_header(device);
        let answer = conn.call("GET", self.endpoint.host(), &path, &auth, None).await?;
        Ok(self.settle(answer, started, 0))
    }

    fn settle(&self, answer: client::Answer, started: Instant, polls: usize) -> Outcome {
        let latency = started.elapsed();
        if (answer.status == 200 || answer.status == 202) && answer.body["status"] == "assigned" {
            let operation_id = answer.body["operationId"].as_str().map(str::to_string);
            Outcome::Done { latency, operation_id, polls }
        } else if answer.status == 200 || answer.status == 202 {
            failed(&format!("status {}", answer.body["status"].as_str().unwrap_or("?")), &answer.body)
        } else {
            failed(&format!("http {}", answer.status), &answer.body)
        }
    }
}

/// The `Authorization` header of a device with a SAS token (none for a certificate device).
fn auth_header(device: &Device) -> Vec<(&'static str, &str)> {
    match device.certificate {
        None => vec![("authorization", device.authorization.as_str())],
        Some(_) => Vec::new(),
    }
}

fn failed(kind: &str, body: &serde_json::Value) -> Outcome {
    Outcome::Failed { kind: kind.to_string(), detail: body.to_string() }
}

/// Run `step` for every device with `concurrency` in flight; each slot holds a connection (or opens one per
/// device, presenting the device's certificate if it has one). Returns the outcomes in device order.
async fn drive<S, Fut>(
    devices: &Devices,
    fleet: &Arc<Vec<Device>>,
    concurrency: usize,
    progress: Arc<AtomicUsize>,
    step: S,
) -> Vec<Outcome>
where
    S: Fn(Connection, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (Option<Connection>, anyhow::Result<Outcome>)> + Send,
{
    let count = fleet.len();
    let next = Arc::new(AtomicUsize::new(0));
    let step = Arc::new(step);
    let mut slots = tokio::task::JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let (devices, next, step, progress) = (devices.clone(), next.clone(), step.clone(), progress.clone());
        let fleet = fleet.clone();
        slots.spawn(async move {
            let mut out = Vec::new();
            let mut kept: Option<Connection> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let conn = match kept.take() {
                    Some(conn) if devices.connect == Connect::KeepAlive => Ok(conn),
                    _ => devices.endpoint.connect_as(fleet[i].certificate.as_ref()).await,
                };
                let outcome = match conn {
                    Ok(conn) => {
                        let (conn, result) = step(conn, i).await;
                        kept = conn;
                        result
                            .unwrap_or_else(|e| Outcome::Failed { kind: "transport".into(), detail: format!("{e:#}") })
                    }
                    Err(e) => Outcome::Failed { kind: "connect".into(), detail: format!("{e:#}") },
                };
                progress.fetch_add(1, Ordering::Relaxed);
                out.push((i, outcome));
            }
            out
        });
    }
    let mut all = Vec::with_capacity(count);
    while let Some(done) = slots.join_next().await {
        all.extend(done.expect("a device slot panicked"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, o)| o).collect()
}

/// Provision the devices once (`register` for every device), with a progress line labelled `label`.
async fn register_all(devices: &Devices, fleet: Arc<Vec<Device>>, concurrency: usize, label: &str) -> Vec<Outcome> {
    let progress = Progress::start(label, fleet.len());
    let api = devices.clone();
    let outcomes = drive(devices, &fleet.clone(), concurrency, progress.counter(), move |mut conn, i| {
        let (api, fleet) = (api.clone(), fleet.clone());
        async move {
            let result = api.register(&mut conn, &fleet[i]).await;
            let keep = result.is_ok().then_some(conn);
            (keep, result)
        }
    })
    .await;
    progress.finish();
    outcomes
}

/// Print the report's summary line and, with `--json`, write it as JSON (to stdout for `-`).
pub fn emit(options: &Options, report: &Report) -> anyhow::Result<()> {
    println!("{report}");
    match options.json.as_deref() {
        Some(path) if path.as_os_str() == "-" => println!("{}", serde_json::to_string_pretty(report)?),
        Some(path) => std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?,
        None => {}
    }
    Ok(())
}

/// Run the load as `options` say and report on the measured phase.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let connect = match (options.connect, options.attestation.is_x509()) {
        (Some(Connect::KeepAlive), true) => anyhow::bail!(
            "X.509 devices present their certificate in the TLS handshake, so each needs a connection of its own: \
             use --connect fresh"
        ),
        (Some(connect), _) => connect,
        (None, true) => Connect::Fresh,
        (None, false) => Connect::KeepAlive,
    };
    if options.signing_cert.is_some() && options.attestation != Attestation::X509Group {
        anyhow::bail!("--signing-cert is the signing certificate of an X.509 group: use --attestation x509-group");
    }
    let endpoint = Endpoint::new(&options.url, options.ca.as_deref()).await?;
    let service_endpoint = match &options.service_url {
        Some(url) => Endpoint::new(url, options.ca.as_deref()).await?,
        None => endpoint.clone(),
    };
    let service = Service::new(service_endpoint, &options.connection_string)?;
    if !options.hub.is_empty() {
        setup::link_hub(&service, &options.hub).await.context("linking the hub")?;
    }
    let run_id = options
        .run_id
        .clone()
        .unwrap_or_else(|| format!("loadgen-{:x}", time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000));
    setup::extra_groups(&service, &run_id, options.extra_groups).await.context("creating the other groups")?;
    let (n, attestation, concurrency) = (options.devices, options.attestation, options.concurrency);
    let fleet = if attestation.is_x509() {
        let keys = Keys::new(options.key_type)?;
        let ca = match (&options.signing_cert, &options.signing_key) {
            (Some(cert), Some(key)) => Some(Ca::from_files(cert, key)?),
            _ => None,
        };
        setup::enroll_x509(&service, &run_id, n, attestation, &keys, ca, concurrency).await
    } else {
        setup::enroll(&service, &options.scope, &run_id, n, attestation, concurrency).await
    };
    let fleet = Arc::new(fleet.context("creating the enrollments")?);
    let devices = Devices { endpoint, scope: options.scope.clone(), connect };

    // Re-registrations and polls need registered devices: register them first, untimed.
    let mut operations: Vec<Option<String>> = vec![None; fleet.len()];
    if options.mode != Mode::First {
        let first = register_all(&devices, fleet.clone(), options.concurrency, "registering").await;
        for (slot, outcome) in operations.iter_mut().zip(first) {
            match outcome {
                Outcome::Done { operation_id, .. } => *slot = operation_id,
                Outcome::Failed { kind, detail } => {
                    anyhow::bail!("registering before the measured phase: {kind}: {detail}")
                }
            }
        }
    }

    let cpu_before = options.server_pid.map(process_cpu).transpose()?;
    let started = Instant::now();
    let outcomes = match options.mode {
        Mode::First | Mode::Reregister => register_all(&devices, fleet.clone(), options.concurrency, "measuring").await,
        Mode::Poll => {
            let progress = Progress::start("measuring", fleet.len());
            let (api, fleet, operations) = (devices.clone(), fleet.clone(), Arc::new(operations));
            let outcomes =
                drive(&devices, &fleet.clone(), options.concurrency, progress.counter(), move |mut conn, i| {
                    let (api, fleet, operations) = (api.clone(), fleet.clone(), operations.clone());
                    async move {
                        let operation = operations[i].clone().unwrap_or_default();
                        let result = api.poll(&mut conn, &fleet[i], &operation).await;
                        let keep = result.is_ok().then_some(conn);
                        (keep, result)
                    }
                })
                .await;
            progress.finish();
            outcomes
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = options.server_pid.map(process_cpu).transpose()?;

    let mut latencies = Vec::with_capacity(outcomes.len());
    let mut errors = BTreeMap::new();
    let mut assigning_polls = 0;
    let mut shown = 0;
    for outcome in outcomes {
        match outcome {
            Outcome::Done { latency, polls, .. } => {
                latencies.push(latency);
                assigning_polls += polls;
            }
            Outcome::Failed { kind, detail } => {
                if shown < 3 {
                    eprintln!("dps-loadgen: {kind}: {detail}");
                    shown += 1;
                }
                *errors.entry(kind).or_insert(0) += 1;
            }
        }
    }
    let succeeded = latencies.len();
    let server_cpu_us_per_op = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if succeeded > 0 => {
            Some(after.saturating_sub(before).as_secs_f64() * 1e6 / succeeded as f64)
        }
        _ => None,
    };
    Ok(Report {
        mode: format!("{:?}", options.mode).to_lowercase(),
        connection: match connect {
            Connect::KeepAlive => "keepAlive".into(),
            Connect::Fresh => "fresh".into(),
        },
        attestation: match attestation {
            Attestation::Group => "group".into(),
            Attestation::Individual => "individual".into(),
            Attestation::X509Group => format!("x509Group/{}", key_name(options.key_type)),
            Attestation::X509Individual => format!("x509Individual/{}", key_name(options.key_type)),
        },
        devices: options.devices,
        concurrency: options.concurrency,
        seconds,
        per_second: succeeded as f64 / seconds.max(1e-9),
        succeeded,
        errors,
        latency_ms: Latency::of(&mut latencies),
        assigning_polls,
        server_cpu_us_per_op,
    })
}

fn key_name(kind: KeyType) -> &'static str {
    match kind {
        KeyType::P256 => "p256",
        KeyType::Rsa2048 => "rsa2048",
    }
}
