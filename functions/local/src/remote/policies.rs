//! `dps policy upload|list|show|delete|dry-run`: WebAssembly allocation policies, and their dry runs rendered
//! for people (decision, then the trace: fuel, time, memory, the policy's log lines).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use dps_client::api::Collection;
use serde_json::{Value, json};

use super::{Connect, output, target};
use crate::cli::Global;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload (or replace) a module (a .wasm file) under NAME.
    Upload { name: String, file: PathBuf },
    /// List the policies.
    List,
    /// Show one policy (hash, size, ABI version, exports).
    Show { name: String },
    /// Delete a policy's name (enrollments naming it fail to allocate until it is uploaded again).
    Delete { name: String },
    /// Run the policy on a sample AllocationRequest, with the production limits, and show the decision and trace.
    DryRun {
        name: String,
        /// The whole AllocationRequest as a JSON file (default: a minimal one from --registration-id).
        #[arg(long, conflicts_with_all = ["registration_id", "payload"])]
        request: Option<PathBuf>,
        /// The device's registration ID.
        #[arg(long, default_value = "dry-run-device")]
        registration_id: String,
        /// The device's payload (a JSON value).
        #[arg(long)]
        payload: Option<String>,
        /// Offered hubs (repeat; default: the instance's linked hubs).
        #[arg(long)]
        hub: Vec<String>,
    },
}

pub async fn run(connect: &Connect, global: &Global, cmd: Command) -> anyhow::Result<()> {
    let client = target::client(connect, global).await?;
    let shown = match cmd {
        Command::Upload { name, file } => {
            let module = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            client.upload_policy(&name, module).await?
        }
        Command::Show { name } => client.get(Collection::Policies, &name).await?,
        Command::List => {
            let all = client.list(Collection::Policies).await?;
            if connect.json {
                output::json(&Value::Array(all));
                return Ok(());
            }
            let rows: Vec<Vec<String>> = all
                .iter()
                .map(|p| {
                    let mut row: Vec<String> = ["/name", "/size", "/abiVersion", "/uploadedDateTimeUtc"]
                        .iter()
                        .map(|f| output::cell(p, f))
                        .collect();
                    row.push(output::cell(p, "/sha256").chars().take(16).collect());
                    row
                })
                .collect();
            output::table(&["NAME", "SIZE", "ABI", "UPLOADED", "SHA-256"], &rows);
            return Ok(());
        }
        Command::Delete { name } => {
            client.delete(Collection::Policies, &name).await?;
            output::deleted(connect.json, "name", &name, &format!("deleted policy '{name}'"));
            return Ok(());
        }
        Command::DryRun { name, request, registration_id, payload, hub } => {
            let mut body = match request {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?
                }
                None => {
                    let mut context = json!({ "registrationId": registration_id });
                    if let Some(p) = payload {
                        context["payload"] = serde_json::from_str(&p).context("--payload is not JSON")?;
                    }
                    json!({ "deviceRuntimeContext": context })
                }
            };
            if !hub.is_empty() {
                body["linkedHubs"] = json!(hub);
            }
            let result = client.dry_run_policy(&name, &body).await?;
            if connect.json {
                output::json(&result)
            } else {
                render_dry_run(&result)
            }
            return Ok(());
        }
    };
    output::entity(connect.json, &shown);
    Ok(())
}

/// The decision first, then where the time and fuel went, then the policy's own log lines.
fn render_dry_run(result: &Value) {
    let cell = |p: &str| output::cell(result, p);
    match result.get("status").and_then(Value::as_str) {
        Some("assigned") => {
            println!("decision:   assigned to {}", cell("/allocation/iotHubHostName"));
            if let Some(twin) = result.pointer("/allocation/initialTwin").filter(|t| !t.is_null()) {
                println!("twin:       {twin}");
            }
            if let Some(payload) = result.pointer("/allocation/payload").filter(|t| !t.is_null()) {
                println!("payload:    {payload}");
            }
        }
        _ => println!("decision:   failed, errorCode {}: {}", cell("/errorCode"), cell("/errorMessage")),
    }
    let num = |p: &str| result.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let (fuel, limit) = (num("/trace/fuelConsumed"), num("/trace/fuelLimit"));
    let share = if limit > 0 { fuel as f64 * 100.0 / limit as f64 } else { 0.0 };
    println!("fuel:       {fuel} of {limit} ({share:.1}%)");
    println!("time:       {:.3} ms", num("/trace/durationMicros") as f64 / 1000.0);
    println!("memory:     {} KiB peak", num("/trace/peakMemoryBytes") / 1024);
    let logs = result.pointer("/trace/logs").and_then(Value::as_array).cloned().unwrap_or_default();
    if logs.is_empty() {
        println!("log:        (none)");
    } else {
        println!("log:");
        for line in &logs {
            println!("  | {}", line.as_str().map(str::to_string).unwrap_or_else(|| line.to_string()));
        }
    }
    if result.pointer("/trace/logsTruncated") == Some(&json!(true)) {
        println!("  | ... (truncated)");
    }
}
