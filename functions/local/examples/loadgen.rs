//! Load generator: first-time device registrations against a running `dps serve`, over TLS.
//!
//! Creates a symmetric-key enrollment group (and links a hub) through the service API, then registers `--devices`
//! distinct devices, each with its key derived from the group key, over `--concurrency` keep-alive HTTP/1.1
//! connections. Reports registrations per second and latency percentiles. A benchmark, not a test: it asserts
//! nothing about speed. See docs/benchmarks.md.
//!
//! ```text
//! cargo run --release -p dps-local --example loadgen -- \
//!     --data-dir .dps-data --addr 127.0.0.1:8443 --devices 5000 --concurrency 16
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;

#[derive(Debug, Parser)]
struct Args {
    /// Address of the server.
    #[arg(long, default_value = "127.0.0.1:8443")]
    addr: SocketAddr,
    /// TLS server name (also the Host of service API calls: the instance's service host name).
    #[arg(long, default_value = "localhost")]
    host: String,
    /// CA certificate to trust (PEM); defaults to <data-dir>/tls/ca.pem.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Data dir of the server (for the CA path only).
    #[arg(long, default_value = ".dps-data")]
    data_dir: PathBuf,
    /// Service connection string (`dps instance show default`).
    #[arg(long, env = "DPS_CONNECTION_STRING", hide_env_values = true)]
    connection_string: String,
    /// ID scope of the instance.
    #[arg(long, env = "DPS_ID_SCOPE")]
    scope: String,
    /// Devices to register (each once, first-time).
    #[arg(long, default_value_t = 2000)]
    devices: usize,
    /// Concurrent connections (one request at a time on each).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Other symmetric-key groups to create first (sorted before the measured group), to see what many groups
    /// cost a registration.
    #[arg(long, default_value_t = 0)]
    extra_groups: usize,
}

const DEVICE_API: &str = "2021-06-01";
const SERVICE_API: &str = "2021-10-01";

struct Client {
    sender: http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Client {
    async fn connect(args: &Args, tls: &TlsConnector) -> anyhow::Result<Self> {
        let tcp =
            tokio::net::TcpStream::connect(args.addr).await.with_context(|| format!("connecting to {}", args.addr))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(args.host.clone())?;
        let stream = tls.connect(name, tcp).await.context("TLS handshake")?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        Ok(Self { sender, host: args.host.clone() })
    }

    async fn call(&mut self, method: &str, path: &str, auth: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.sender.ready().await?;
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("authorization", auth)
            .header("content-type", "application/json; charset=utf-8")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
        let response = self.sender.send_request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
        Ok((status, value))
    }
}

fn connection_parts(conn: &str) -> anyhow::Result<(String, String, String)> {
    let get = |name: &str| {
        conn.split(';')
            .find_map(|p| p.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            .map(str::to_string)
            .with_context(|| format!("connection string lacks {name}"))
    };
    Ok((get("HostName")?, get("SharedAccessKeyName")?, get("SharedAccessKey")?))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let ca = args.ca.clone().unwrap_or_else(|| args.data_dir.join("tls").join("ca.pem"));
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&ca).with_context(|| format!("reading {}", ca.display()))?;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = TlsConnector::from(Arc::new(config));

    // Setup through the service API: a linked hub and a fresh group, so every registration is a first one.
    let (host, key_name, key) = connection_parts(&args.connection_string)?;
    let service_auth = dps_core::sas::token(&host, &key, now() + 3600, Some(&key_name))?;
    let mut admin = Client::connect(&args, &tls).await?;
    let hub = json!({"allocationWeight": 1});
    let (status, body) = admin
        .call(
            "PUT",
            &format!("/config/linkedHubs/loadgen-hub.example.net?api-version={SERVICE_API}"),
            &service_auth,
            &hub,
        )
        .await?;
    if status != 200 {
        bail!("linking a hub: HTTP {status} {body}");
    }
    let run = format!("{:x}", now());
    for i in 0..args.extra_groups {
        let extra_id = format!("loadgen-{run}-a{i:05}");
        let extra = json!({"enrollmentGroupId": extra_id, "attestation": {"type": "symmetricKey"}});
        let path = format!("/enrollmentGroups/{extra_id}?api-version={SERVICE_API}");
        let (status, body) = admin.call("PUT", &path, &service_auth, &extra).await?;
        if status != 200 {
            bail!("creating extra group {i}: HTTP {status} {body}");
        }
    }
    let group_id = format!("loadgen-{run}-z");
    let group_key = dps_core::sas::generate_key();
    let group = json!({
        "enrollmentGroupId": group_id,
        "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": group_key, "secondaryKey": dps_core::sas::generate_key()}},
    });
    let (status, body) = admin
        .call("PUT", &format!("/enrollmentGroups/{group_id}?api-version={SERVICE_API}"), &service_auth, &group)
        .await?;
    if status != 200 {
        bail!("creating the enrollment group: HTTP {status} {body}");
    }
    // Pre-compute device credentials so that the timed loop measures the server, not the client's HMACs.
    let credentials: Arc<Vec<(String, String)>> = Arc::new(
        (0..args.devices)
            .map(|i| {
                let id = format!("{group_id}-dev-{i}");
                let device_key = dps_core::sas::derive_device_key(&group_key, &id)?;
                let resource = format!("{}/registrations/{id}", args.scope);
                let auth = dps_core::sas::token(&resource, &device_key, now() + 3600, Some("registration"))?;
                Ok((id, auth))
            })
            .collect::<anyhow::Result<_>>()?,
    );
    println!(
        "loadgen: {} first-time registrations, {} connections, group {group_id} (after {} other groups), server {}",
        args.devices, args.concurrency, args.extra_groups, args.addr
    );

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let (args, tls, next, credentials) = (args.clone(), tls.clone(), next.clone(), credentials.clone());
        workers.spawn(async move {
            let mut client = Client::connect(&args, &tls).await?;
            let mut latencies = Vec::new();
            let mut failures = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((id, auth)) = credentials.get(i) else { break };
                let path = format!("/{}/registrations/{id}/register?api-version={DEVICE_API}", args.scope);
                let t0 = Instant::now();
                let (status, body) = client.call("PUT", &path, auth, &json!({"registrationId": id})).await?;
                latencies.push(t0.elapsed());
                if status != 202 || body["status"] != "assigned" {
                    failures += 1;
                    if failures <= 3 {
                        eprintln!("loadgen: {id}: HTTP {status} {body}");
                    }
                }
            }
            anyhow::Ok((latencies, failures))
        });
    }
    let mut latencies = Vec::with_capacity(args.devices);
    let mut failures = 0;
    while let Some(joined) = workers.join_next().await {
        let (l, f) = joined??;
        latencies.extend(l);
        failures += f;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let rate = latencies.len() as f64 / elapsed.as_secs_f64();
    println!(
        "loadgen: {} registrations in {:.2} s = {rate:.0}/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {failures} failed",
        latencies.len(),
        elapsed.as_secs_f64(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 90.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
    );
    println!(
        "{}",
        json!({
            "devices": latencies.len(), "concurrency": args.concurrency, "extraGroups": args.extra_groups, "seconds": elapsed.as_secs_f64(),
            "perSecond": rate, "p50Ms": ms(percentile(&latencies, 50.0)), "p90Ms": ms(percentile(&latencies, 90.0)),
            "p99Ms": ms(percentile(&latencies, 99.0)), "maxMs": ms(latencies.last().copied().unwrap_or_default()),
            "failed": failures,
        })
    );
    if failures > 0 {
        bail!("{failures} registrations failed");
    }
    Ok(())
}
