//! `dps ca upload|verify|list|show|delete`: CA certificates that X.509 groups reference by name.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use dps_client::api::Collection;
use serde_json::json;

use super::{Connect, output, target};
use crate::cli::Global;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload a CA certificate (PEM file); it starts unverified, with a verification code.
    Upload { name: String, file: PathBuf },
    /// Prove possession of the CA key: a certificate (PEM file) the CA signed whose subject CN is the code.
    Verify { name: String, file: PathBuf },
    /// List the CA certificates.
    List,
    /// Show one (certificate PEM, subject, verification state and code).
    Show { name: String },
    /// Delete one (refused while a group references it).
    Delete { name: String },
}

pub async fn run(connect: &Connect, global: &Global, cmd: Command) -> anyhow::Result<()> {
    let client = target::client(connect, global).await?;
    let read = |p: &PathBuf| std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
    let shown = match cmd {
        Command::Upload { name, file } => {
            let ca = client.put_ca_certificate(&name, &read(&file)?).await?;
            if !connect.json && ca["isVerified"] != json!(true) {
                eprintln!(
                    "next: issue a certificate with subject CN={} signed by this CA, then `dps ca verify {name} FILE`",
                    output::cell(&ca, "/verificationCode")
                );
            }
            ca
        }
        Command::Verify { name, file } => client.verify_ca_certificate(&name, &read(&file)?).await?,
        Command::Show { name } => client.get(Collection::CaCertificates, &name).await?,
        Command::Delete { name } => {
            client.delete(Collection::CaCertificates, &name).await?;
            output::deleted(connect.json, "name", &name, &format!("deleted CA certificate '{name}'"));
            return Ok(());
        }
        Command::List => {
            let columns = [
                ("NAME", "/name"),
                ("VERIFIED", "/isVerified"),
                ("SUBJECT", "/info/subjectName"),
                ("NOT AFTER", "/info/notAfterUtc"),
                ("SHA-256", "/info/sha256Thumbprint"),
            ];
            output::list(connect.json, &client.list(Collection::CaCertificates).await?, &columns);
            return Ok(());
        }
    };
    output::entity(connect.json, &shown);
    Ok(())
}
