//! `dps-admin`: the operator's bootstrap on AWS. Writes straight to the deployment's DynamoDB table with the
//! caller's own AWS credentials (environment, profile, SSO), so creating the first instance and its keys needs
//! no key of ours: whoever may write the table may create instances.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use dps_core::model::{AccessPolicy, Instance, LinkedHub};
use dps_core::usecases::NewInstance;
use dps_core::{Dps, Settings};
use dps_store_dynamodb::DynamoConfig;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "dps-admin", version, about = "Operator tool of the provisioning service on AWS")]
struct Cli {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Target {
    /// DynamoDB table of the deployment (the stack output `TableName`).
    #[arg(long, env = "DPS_TABLE_NAME", global = true)]
    table: Option<String>,
    /// AWS region (default: the SDK's chain: AWS_REGION, profile).
    #[arg(long, env = "AWS_REGION", global = true)]
    region: Option<String>,
    /// DynamoDB endpoint, for local runs against moto or DynamoDB Local.
    #[arg(long, env = "DPS_DYNAMODB_ENDPOINT", global = true)]
    endpoint_url: Option<String>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Provisioning service instances (tenants).
    #[command(subcommand)]
    Instance(InstanceCommand),
    /// Hubs linked to an instance.
    #[command(subcommand)]
    Hub(HubCommand),
    /// The table itself (local runs; on AWS the SAM template creates it).
    #[command(subcommand)]
    Table(TableCommand),
}

#[derive(Subcommand)]
enum InstanceCommand {
    /// Create an instance; prints its ID scope and the owner connection string.
    Create {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Host name of the service endpoint (the service function URL's host, or your custom domain).
        #[arg(long)]
        host: String,
        /// ID scope (default: generated).
        #[arg(long)]
        id_scope: Option<String>,
    },
    /// Print an instance's connection string for one of its shared access policies.
    ConnectionString {
        /// ID scope of the instance.
        #[arg(long)]
        id_scope: String,
        /// Policy name (default: the owner policy created with the instance).
        #[arg(long, default_value = "provisioningserviceowner")]
        policy: String,
        /// Use the secondary key.
        #[arg(long)]
        secondary: bool,
    },
    /// List instances (no keys).
    List,
}

#[derive(Subcommand)]
enum HubCommand {
    /// Link a hub to an instance (or replace its settings).
    Link {
        /// ID scope of the instance.
        #[arg(long)]
        id_scope: String,
        /// Host name of the hub.
        #[arg(long)]
        hub: String,
        /// Allocation weight, 1 to 1000.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Region of the hub, for the lowest-latency policy.
        #[arg(long)]
        location: Option<String>,
        /// Leave the hub out of automatic allocation (enrollments may still name it).
        #[arg(long)]
        no_auto_allocation: bool,
    },
}

#[derive(Subcommand)]
enum TableCommand {
    /// Create the table with its index and TTL (for moto / DynamoDB Local).
    Create,
    /// Move registration records and TPM challenges written by releases before records had a partition of
    /// their own (docs/dynamodb.md, "Upgrading"); safe to run again, and while the functions run.
    MigrateRecords,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let t = &cli.target;
    let table = t.table.clone().context("--table (or DPS_TABLE_NAME) is required")?;
    let config =
        DynamoConfig { endpoint_url: t.endpoint_url.clone(), region: t.region.clone(), ..DynamoConfig::new(&table) };
    let store = config.connect().await;

    match cli.command {
        Command::Table(TableCommand::Create) => {
            dps_store_dynamodb::create_table(store.client(), &table).await.context("creating the table")?;
            println!("table {table} is active");
            return Ok(());
        }
        Command::Table(TableCommand::MigrateRecords) => {
            let done = store.migrate_records().await.context("moving the records")?;
            if t.json {
                println!("{}", serde_json::to_string(&done)?);
            } else {
                println!("moved {}, superseded {}, changed while moving {}", done.moved, done.superseded, done.changed);
            }
            if done.changed > 0 {
                anyhow::bail!("{} item(s) changed while being moved: run the command again", done.changed);
            }
            return Ok(());
        }
        _ => {}
    }
    let dps = Dps::new(Arc::new(store), Settings::default());
    match cli.command {
        Command::Instance(InstanceCommand::Create { name, host, id_scope }) => {
            let new = NewInstance { name, service_host_name: host, id_scope };
            let instance = dps.create_instance(new).await?;
            // A new instance has exactly one policy: the all-rights owner.
            let owner = instance.authorization_policies.first().context("the new instance has no access policy")?;
            print_instance(&instance, owner, &owner.primary_key, t.json);
        }
        Command::Instance(InstanceCommand::ConnectionString { id_scope, policy, secondary }) => {
            let instance = dps
                .store()
                .instance_by_scope(&id_scope)
                .await?
                .with_context(|| format!("no instance with ID scope {id_scope}"))?;
            let found = instance
                .authorization_policies
                .iter()
                .find(|p| p.key_name.eq_ignore_ascii_case(&policy))
                .with_context(|| format!("instance {id_scope} has no access policy named {policy}"))?;
            let key = if secondary { &found.secondary_key } else { &found.primary_key };
            print_instance(&instance, found, key, t.json);
        }
        Command::Instance(InstanceCommand::List) => {
            let instances = dps.list_instances().await?;
            if t.json {
                let out: Vec<_> = instances
                    .iter()
                    .map(|i| serde_json::json!({"name": i.name, "idScope": i.id_scope, "serviceHostName": i.service_host_name}))
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else {
                for i in instances {
                    println!("{}\t{}\t{}", i.id_scope, i.name, i.service_host_name);
                }
            }
        }
        Command::Hub(HubCommand::Link { id_scope, hub, weight, location, no_auto_allocation }) => {
            let linked = LinkedHub {
                host_name: hub.clone(),
                allocation_weight: weight,
                apply_allocation_policy: !no_auto_allocation,
                location,
                connector: None,
            };
            let written = dps
                .update_instance_as_operator(&id_scope, |i| {
                    let mut linked = linked;
                    // Re-linking changes weight and location; a connector set through the service API stays.
                    linked.connector = i
                        .linked_hubs
                        .iter()
                        .find(|h| h.host_name.eq_ignore_ascii_case(&hub))
                        .and_then(|h| h.connector.clone());
                    i.linked_hubs.retain(|h| !h.host_name.eq_ignore_ascii_case(&hub));
                    i.linked_hubs.push(linked);
                    Ok(())
                })
                .await?;
            if t.json {
                let shown: Vec<_> = written.linked_hubs.iter().map(LinkedHub::without_credentials).collect();
                println!("{}", serde_json::to_string(&shown)?);
            } else {
                println!("{} now links {} hub(s)", written.id_scope, written.linked_hubs.len());
            }
        }
        Command::Table(_) => unreachable!("handled above"),
    }
    Ok(())
}

fn print_instance(instance: &Instance, policy: &AccessPolicy, key: &str, json: bool) {
    let connection_string = format!(
        "HostName={};SharedAccessKeyName={};SharedAccessKey={key}",
        instance.service_host_name, policy.key_name
    );
    if json {
        let out = serde_json::json!({
            "name": instance.name,
            "idScope": instance.id_scope,
            "serviceHostName": instance.service_host_name,
            "connectionString": connection_string,
        });
        println!("{out}");
    } else {
        println!("name:              {}", instance.name);
        println!("ID scope:          {}", instance.id_scope);
        println!("service host:      {}", instance.service_host_name);
        println!("connection string: {connection_string}");
    }
}
