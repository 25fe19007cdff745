//! The `dps serve` the binary's end-to-end tests run against: an ephemeral port, its own data dir, its startup
//! JSON (`--print-json`) read, stopped when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use dps_loadgen::client::Endpoint;
use serde_json::Value;

/// One `dps` command on `data_dir`, with no deployment or instance named by the environment.
pub fn dps(data_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dps"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env_remove("DPS_CONNECTION_STRING")
        .env_remove("DPS_ID_SCOPE")
        .env_remove("DPS_PROFILE")
        .env_remove("DPS_ENDPOINT")
        .env_remove("DPS_CA_FILE")
        .output()
        .expect("dps runs")
}

/// A running `dps serve`.
pub struct Server {
    pub child: Child,
    /// The startup JSON: `listen`, `deviceUrl`, `caCertificate`, `idScope`, `connectionString`, ...
    pub info: Value,
}

impl Server {
    /// `dps serve` on 127.0.0.1:0 with `data_dir` and `extra` flags (none from the environment).
    pub fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dps"))
            .args(["serve", "--listen", "127.0.0.1:0", "--print-json", "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("DPS_METRICS_LISTEN")
            .env_remove("DPS_EVENTS_FILE")
            .env_remove("DPS_EVENTS_WEBHOOK")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dps serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        Self { child, info: serde_json::from_str(&line).expect("startup JSON") }
    }

    /// A string field of the startup JSON.
    pub fn field(&self, name: &str) -> String {
        self.info[name].as_str().unwrap_or_else(|| panic!("startup JSON has {name}: {}", self.info)).to_string()
    }

    /// The HTTPS endpoint, trusting the server's generated CA.
    pub async fn endpoint(&self) -> Endpoint {
        let url = format!("https://{}", self.field("listen"));
        Endpoint::new(&url, Some(Path::new(&self.field("caCertificate")))).await.unwrap()
    }

    /// A graceful stop (SIGTERM), waited for.
    pub fn stop(&mut self) -> ExitStatus {
        let sent = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        self.child.wait().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
            let _ = self.child.wait();
        }
    }
}
