//! `dps hub list|show|link|unlink`: linked hubs through the service API (`/config/linkedHubs`), like every
//! client command. One exception keeps setup scripts simple: with no deployment named (no
//! `--connection-string`, `DPS_CONNECTION_STRING` or `--profile`) and no server holding `--data-dir`, the
//! command edits the data dir directly, so hubs can be linked before the first `dps serve`. (A server that was
//! killed leaves its `serve.json`; remove it, or start and stop the server, to edit the data dir again.)

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use dps_client::api::Collection;
use serde_json::{Value, json};

use super::{Connect, output, target};
use crate::cli::Global;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the linked hubs.
    List,
    /// Show one linked hub.
    Show {
        /// Hub host name.
        #[arg(long)]
        host: String,
    },
    /// Link a hub (or change its weight, location or connector; a connector already set stays unless replaced).
    Link {
        /// Hub host name.
        #[arg(long)]
        host: String,
        /// Allocation weight, 1 to 1000.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Hub region, for the geoLatency policy.
        #[arg(long)]
        location: Option<String>,
        /// Leave the hub out of automatic allocation (enrollments may still name it).
        #[arg(long)]
        no_auto_allocation: bool,
        /// A JSON file with the connector: {"kind", "settings", "credentials"?} (docs/hubs.md).
        #[arg(long)]
        connector: Option<PathBuf>,
    },
    /// Unlink a hub (devices already assigned to it stay there).
    Unlink {
        /// Hub host name.
        #[arg(long)]
        host: String,
    },
}

pub async fn run(connect: &Connect, global: &Global, cmd: Command) -> anyhow::Result<()> {
    if !target::explicit(connect)
        && !target::local_server_running(global)
        && let Some(dps) = crate::admin::open_if_free(global).await?
    {
        return crate::admin::hub(dps, global, connect, cmd).await;
    }
    let client = target::client(connect, global).await?;
    match cmd {
        Command::List => {
            let hubs = client.list(Collection::LinkedHubs).await?;
            print_list(connect, &hubs);
        }
        Command::Show { host } => {
            let hub = client.get(Collection::LinkedHubs, &host).await?;
            output::entity(connect.json, &hub)
        }
        Command::Link { host, weight, location, no_auto_allocation, connector } => {
            let mut body = json!({ "allocationWeight": weight, "applyAllocationPolicy": !no_auto_allocation });
            if let Some(l) = location {
                body["location"] = json!(l);
            }
            match connector {
                Some(path) => {
                    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                    let value: Value =
                        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
                    body["connector"] = value;
                }
                None => {
                    // A PUT replaces the hub: keep the connector it has (its sealed credentials stay server-side).
                    match client.get(Collection::LinkedHubs, &host).await {
                        Ok(current) => {
                            if let Some(c) = current.get("connector").filter(|c| !c.is_null()) {
                                let mut c = c.clone();
                                if let Some(o) = c.as_object_mut() {
                                    o.remove("credentialsSet");
                                }
                                body["connector"] = c;
                            }
                        }
                        Err(e) if e.kind == dps_client::ErrorKind::NotFound => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            let linked = client.put_linked_hub(&host, &body).await?;
            if connect.json { output::json(&linked) } else { println!("linked {host}") }
        }
        Command::Unlink { host } => {
            client.delete(Collection::LinkedHubs, &host).await?;
            if connect.json {
                output::json(&json!({ "hostName": host, "unlinked": true }));
            } else {
                println!("unlinked {host}");
            }
        }
    }
    Ok(())
}

/// A linked hub's row: host, weight, automatic allocation, location, connector kind.
pub fn print_list(connect: &Connect, hubs: &[Value]) {
    let columns = [
        ("HOST NAME", "/hostName"),
        ("WEIGHT", "/allocationWeight"),
        ("AUTO", "/applyAllocationPolicy"),
        ("LOCATION", "/location"),
        ("CONNECTOR", "/connector/kind"),
    ];
    output::list(connect.json, hubs, &columns);
}

/// Refuse what only the service API can do.
pub fn offline_connector(connector: &Option<PathBuf>) -> anyhow::Result<()> {
    if connector.is_some() {
        bail!("a connector's credentials are sealed by the server: start `dps serve`, then link with --connector");
    }
    Ok(())
}
