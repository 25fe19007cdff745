//! Operator commands over the service API of any deployment (a running `dps serve`, or the Lambda stack): the
//! command tree, how a command finds its deployment (connection string, profile, or the local server), exit
//! codes and error hints. The calls themselves are `dps-client`'s. Documented in docs/cli.md.

mod ca;
mod enrollments;
mod export;
mod hubs;
mod import;
mod output;
mod policies;
mod records;
mod target;

use std::process::ExitCode;

use clap::{Args, Subcommand};
use dps_client::ErrorKind;

use crate::cli::Global;

pub use hubs::{Command as HubCommand, offline_connector, print_list as print_hubs};
pub use target::ServeFile;

/// The client commands, flattened into `dps`'s command list.
#[derive(Debug, Subcommand)]
pub enum RemoteCommand {
    /// Individual enrollments: create, show, list, update, enable, disable, delete.
    Enrollment(Remote<enrollments::Command>),
    /// Enrollment groups: create, show, list, update, enable, disable, delete.
    Group(Remote<enrollments::Command>),
    /// Registration records: show, list (by group), delete.
    Registration(Remote<records::Command>),
    /// Linked hubs: list, show, link, unlink (service API; with the server stopped and no connection given, the
    /// local data dir).
    Hub(Remote<hubs::Command>),
    /// WebAssembly allocation policies: upload, list, show, delete, dry-run.
    Policy(Remote<policies::Command>),
    /// CA certificates for X.509 groups: upload, verify, list, show, delete.
    Ca(Remote<ca::Command>),
    /// Print the device key a symmetric-key group gives a registration ID (HMAC-SHA256 of the ID).
    DeriveKey(RemoteArgs<enrollments::DeriveKey>),
    /// Create enrollments or groups in bulk from a CSV or JSONL file (bulk API, 10 per call).
    Import(RemoteArgs<import::Import>),
    /// Write enrollments, groups or registration records to JSONL (paged queries, resumable).
    Export(RemoteArgs<export::Export>),
}

/// A client command group with the options that say which deployment it talks to.
#[derive(Debug, Args)]
pub struct Remote<C: Subcommand> {
    #[command(flatten)]
    pub connect: Connect,
    #[command(subcommand)]
    pub command: C,
}

/// A single client command with the options that say which deployment it talks to.
#[derive(Debug, Args)]
pub struct RemoteArgs<A: Args> {
    #[command(flatten)]
    pub connect: Connect,
    #[command(flatten)]
    pub command: A,
}

/// Which deployment, and how to print. Without `--connection-string` or `--profile`, the running `dps serve`
/// of `--data-dir` (its `default` instance, or `--instance`).
#[derive(Debug, Clone, Args)]
pub struct Connect {
    /// `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` of the instance.
    #[arg(long, env = "DPS_CONNECTION_STRING", hide_env_values = true, global = true)]
    pub connection_string: Option<String>,
    /// A profile of the profiles file (connection string, endpoint, CA file); see docs/cli.md.
    #[arg(long, env = "DPS_PROFILE", global = true, conflicts_with = "connection_string")]
    pub profile: Option<String>,
    /// Send requests to this URL instead of https://{HostName} (e.g. https://127.0.0.1:8443), still speaking
    /// as HostName (the server routes service calls by Host).
    #[arg(long, env = "DPS_ENDPOINT", global = true)]
    pub endpoint: Option<String>,
    /// A CA certificate (PEM) to trust besides the public roots.
    #[arg(long, env = "DPS_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    /// With the local server: which of its instances.
    #[arg(long, default_value = crate::store::DEFAULT_INSTANCE, global = true)]
    pub instance: String,
    /// Print JSON (one document; JSON lines for import results) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// Run a client command.
pub async fn run(global: &Global, command: RemoteCommand) -> anyhow::Result<()> {
    match command {
        RemoteCommand::Enrollment(r) => {
            enrollments::run(&r.connect, global, dps_client::api::EnrollmentKind::Individual, r.command).await
        }
        RemoteCommand::Group(r) => {
            enrollments::run(&r.connect, global, dps_client::api::EnrollmentKind::Group, r.command).await
        }
        RemoteCommand::Registration(r) => records::run(&r.connect, global, r.command).await,
        RemoteCommand::Hub(r) => hubs::run(&r.connect, global, r.command).await,
        RemoteCommand::Policy(r) => policies::run(&r.connect, global, r.command).await,
        RemoteCommand::Ca(r) => ca::run(&r.connect, global, r.command).await,
        RemoteCommand::DeriveKey(r) => enrollments::derive_key(&r.connect, global, r.command).await,
        RemoteCommand::Import(r) => import::run(&r.connect, global, r.command).await,
        RemoteCommand::Export(r) => export::run(&r.connect, global, r.command).await,
    }
}

/// The items of a paged query up to `top` (all without it): `page` reads the page after a continuation.
async fn first_items<F, Fut>(top: Option<usize>, mut page: F) -> anyhow::Result<Vec<serde_json::Value>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: std::future::Future<Output = Result<dps_client::api::Page, dps_client::Error>>,
{
    let mut items = Vec::new();
    let mut continuation: Option<String> = None;
    loop {
        let next = page(continuation.take()).await?;
        items.extend(next.items);
        continuation = next.continuation;
        if continuation.is_none() || top.is_some_and(|t| items.len() >= t) {
            break;
        }
    }
    if let Some(t) = top {
        items.truncate(t);
    }
    Ok(items)
}

/// Some items of a bulk command failed (the others were done); the message says where the failures went.
#[derive(Debug)]
pub struct PartialFailure(pub String);

impl std::fmt::Display for PartialFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PartialFailure {}

/// Exit codes scripts can rely on besides 0 (docs/cli.md).
pub mod exit {
    /// Bad arguments, input or request (HTTP 400, 405, 413, 415), or any other failure.
    pub const USAGE: u8 = 1;
    /// No such entity (404).
    pub const NOT_FOUND: u8 = 2;
    /// Exists already, changed concurrently, etag stale, still referenced (409, 412).
    pub const CONFLICT: u8 = 3;
    /// Key refused, wrong host name or missing right (401, 403).
    pub const AUTH: u8 = 4;
    /// Still throttled (429) after the retries allowed.
    pub const THROTTLED: u8 = 5;
    /// The server failed (5xx) or could not be reached (connection, TLS, timeout).
    pub const UNAVAILABLE: u8 = 6;
    /// A bulk command finished, but some items failed (written to the failed-rows file).
    pub const PARTIAL: u8 = 7;
}

/// Print `err` with a hint of what to do, and return the exit code its kind means.
pub fn report(err: &anyhow::Error) -> ExitCode {
    eprintln!("dps: error: {err:#}");
    if err.downcast_ref::<PartialFailure>().is_some() {
        return ExitCode::from(exit::PARTIAL);
    }
    let Some(client) = err.chain().find_map(|e| e.downcast_ref::<dps_client::Error>()) else {
        return ExitCode::from(exit::USAGE);
    };
    let (code, hint) = match client.kind {
        ErrorKind::Usage => (exit::USAGE, None),
        ErrorKind::NotFound => (exit::NOT_FOUND, Some("check the name or ID; `list` shows what exists")),
        ErrorKind::Conflict => (
            exit::CONFLICT,
            Some("it exists already, is still in use, or changed since it was read: `show` it and try again"),
        ),
        ErrorKind::Auth => (
            exit::AUTH,
            Some(
                "the service refused the key: check the connection string (HostName must be the instance's \
                 service host name, and its policy needs the right this call takes)",
            ),
        ),
        ErrorKind::Throttled => {
            (exit::THROTTLED, Some("the service is throttling: try again later, or lower --concurrency"))
        }
        ErrorKind::Unavailable => (
            exit::UNAVAILABLE,
            Some(
                "is the server running and reachable? (`dps serve`; --endpoint; --ca-file for a private CA such \
                 as the data dir's tls/ca.pem)",
            ),
        ),
    };
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(code)
}
