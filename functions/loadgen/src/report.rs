//! What a run measured: throughput, latency percentiles, errors by kind, server CPU; and the progress line.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The result of a run, as printed and as written to `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// What was measured (`first`, `reregister`, `poll`).
    pub mode: String,
    /// `keepAlive` or `fresh`.
    pub connection: String,
    /// How the devices attested: `group`, `individual` (symmetric keys), `x509Group/p256`,
    /// `x509Individual/rsa2048` ...
    pub attestation: String,
    /// Devices attempted in the measured phase.
    pub devices: usize,
    /// Concurrent devices in flight.
    pub concurrency: usize,
    /// Measured phase wall-clock seconds.
    pub seconds: f64,
    /// Successful operations per second.
    pub per_second: f64,
    /// Operations that ended as expected (`assigned`).
    pub succeeded: usize,
    /// Operations that did not, by kind (`http 429`, `assigning timeout`, `transport` ...).
    pub errors: BTreeMap<String, usize>,
    /// Latency of successful operations, milliseconds (an `assigning` answer's polls included).
    pub latency_ms: Latency,
    /// Status polls sent while following `assigning` answers.
    pub assigning_polls: usize,
    /// Server process CPU (user + system) per successful operation, microseconds, when `--server-pid` was given.
    pub server_cpu_us_per_op: Option<f64>,
}

/// Percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples` (sorted in place).
    pub fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |p: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1000.0
        };
        Self { p50: at(50.0), p90: at(90.0), p99: at(99.0), max: at(100.0) }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.latency_ms;
        write!(
            f,
            "{} {} {} ({} connections): {} of {} in {:.2} s = {:.0}/s; latency p50 {:.2} ms, p90 {:.2} ms, p99 \
             {:.2} ms, max {:.2} ms",
            self.mode,
            self.attestation,
            self.connection,
            self.concurrency,
            self.succeeded,
            self.devices,
            self.seconds,
            self.per_second,
            l.p50,
            l.p90,
            l.p99,
            l.max
        )?;
        if self.assigning_polls > 0 {
            write!(f, "; {} assigning polls", self.assigning_polls)?;
        }
        if let Some(cpu) = self.server_cpu_us_per_op {
            write!(f, "; server CPU {cpu:.1} µs/op")?;
        }
        if self.errors.is_empty() {
            write!(f, "; no errors")
        } else {
            write!(
                f,
                "; errors: {}",
                self.errors.iter().map(|(k, n)| format!("{k} x{n}")).collect::<Vec<_>>().join(", ")
            )
        }
    }
}

/// User + system CPU time of process `pid` so far, from `/proc/<pid>/stat` (Linux).
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces): state is field 3, utime 14.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // The kernel reports in clock ticks; USER_HZ is 100 on every Linux we run on.
    Ok(Duration::from_millis((ticks(14) + ticks(15)) * 10))
}

/// A progress line on stderr, redrawn a few times a second, only when stderr is a terminal.
pub struct Progress {
    done: Arc<AtomicUsize>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Start counting towards `total`.
    pub fn start(label: &str, total: usize) -> Self {
        let done = Arc::new(AtomicUsize::new(0));
        let ticker = std::io::stderr().is_terminal().then(|| {
            let (done, label) = (done.clone(), label.to_string());
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let n = done.load(Ordering::Relaxed);
                    let width = 30;
                    let filled = (n * width).checked_div(total).unwrap_or(width);
                    let rate = n as f64 / started.elapsed().as_secs_f64().max(1e-9);
                    eprint!(
                        "\r{label} [{}{}] {n}/{total} {rate:.0}/s ",
                        "#".repeat(filled),
                        " ".repeat(width.saturating_sub(filled))
                    );
                    let _ = std::io::stderr().flush();
                }
            })
        });
        Self { done, ticker }
    }

    /// A handle to count with from other tasks.
    pub fn counter(&self) -> Arc<AtomicUsize> {
        self.done.clone()
    }

    /// Stop drawing and clear the line.
    pub fn finish(self) {
        if let Some(ticker) = self.ticker {
            ticker.abort();
            eprint!("\r\x1b[2K");
        }
    }
}
