//! `dps registration show|list|delete`: the registration records devices leave (read and delete only: the
//! service writes them).

use clap::Subcommand;
use serde_json::json;

use super::{Connect, output, target};
use crate::cli::Global;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// A device's registration record.
    Show { registration_id: String },
    /// The records of a group's devices.
    List {
        /// Enrollment group ID.
        #[arg(long)]
        group: String,
        /// Stop after this many.
        #[arg(long)]
        top: Option<usize>,
        /// Items per query page (1..1000).
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
    },
    /// Delete a record (the device may register again as new; its hub device is not touched).
    Delete {
        registration_id: String,
        /// Only if its etag is still this.
        #[arg(long)]
        etag: Option<String>,
    },
}

pub async fn run(connect: &Connect, global: &Global, cmd: Command) -> anyhow::Result<()> {
    let client = target::client(connect, global).await?;
    match cmd {
        Command::Show { registration_id } => {
            let record = client.get_registration(&registration_id).await?;
            if connect.json { output::json(&record) } else { output::fields(&record) }
        }
        Command::List { group, top, page_size } => {
            let mut items = Vec::new();
            let mut continuation = None;
            loop {
                let page = client.query_registrations(&group, page_size, continuation.as_deref()).await?;
                items.extend(page.items);
                continuation = page.continuation;
                if continuation.is_none() || top.is_some_and(|t| items.len() >= t) {
                    break;
                }
            }
            if let Some(t) = top {
                items.truncate(t);
            }
            let columns = [
                ("REGISTRATION ID", "/registrationId"),
                ("STATUS", "/status"),
                ("HUB", "/assignedHub"),
                ("DEVICE ID", "/deviceId"),
                ("UPDATED", "/lastUpdatedDateTimeUtc"),
            ];
            output::list(connect.json, &items, &columns);
            if !connect.json {
                eprintln!("{} record(s)", items.len());
            }
        }
        Command::Delete { registration_id, etag } => {
            client.delete_registration(&registration_id, etag.as_deref()).await?;
            if connect.json {
                output::json(&json!({ "registrationId": registration_id, "deleted": true }));
            } else {
                println!("deleted the registration record of '{registration_id}'");
            }
        }
    }
    Ok(())
}
