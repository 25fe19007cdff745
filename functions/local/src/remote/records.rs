//! `dps registration show|list|delete`: the registration records devices leave (read and delete only: the
//! service writes them).

use clap::Subcommand;

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
            output::entity(connect.json, &record)
        }
        Command::List { group, top, page_size } => {
            let (client, group) = (&client, group.as_str());
            let page = move |c: Option<String>| async move {
                client.query_registrations(group, page_size, c.as_deref()).await
            };
            let items = super::first_items(top, page).await?;
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
            let message = format!("deleted the registration record of '{registration_id}'");
            output::deleted(connect.json, "registrationId", &registration_id, &message);
        }
    }
    Ok(())
}
