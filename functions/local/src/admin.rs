//! Operator commands on the data dir of a stopped server (instances, and linked hubs before the first start,
//! through the core's operator path) and SAS tokens.

use anyhow::{Context, bail};
use dps_core::model::{Instance, LinkedHub};
use dps_core::usecases::NewInstance;
use dps_core::{Dps, Settings};
use serde_json::json;

use crate::cli::{Global, InstanceCommand, TokenCommand};
use crate::remote::{Connect, HubCommand};
use crate::store;

fn open(global: &Global) -> anyhow::Result<Dps> {
    store::open(&global.data_dir, Settings::default(), false)
}

pub async fn instance(global: &Global, cmd: InstanceCommand) -> anyhow::Result<()> {
    let dps = open(global)?;
    match cmd {
        InstanceCommand::Create { name, host } => {
            let created = dps
                .create_instance(NewInstance { name, service_host_name: host, id_scope: None })
                .await
                .context("creating the instance")?;
            println!(
                "created instance '{}': ID scope {}, service host name {}",
                created.name, created.id_scope, created.service_host_name
            );
            println!("restart `dps serve` so that its certificate covers the new host name");
        }
        InstanceCommand::List => {
            let instances = store::ensure_default_instance(&dps, &global.service_host_name).await?;
            println!("{:<12}  {:<24}  SERVICE HOST NAME", "ID SCOPE", "NAME");
            for i in instances {
                println!("{:<12}  {:<24}  {}", i.id_scope, i.name, i.service_host_name);
            }
        }
        InstanceCommand::Show { name, json, env } => {
            store::ensure_default_instance(&dps, &global.service_host_name).await?;
            let i = store::instance_named(&dps, &name).await?;
            let conn = store::connection_string(&i)?;
            if json {
                let out = json!({
                    "name": i.name,
                    "idScope": i.id_scope,
                    "serviceHostName": i.service_host_name,
                    "connectionString": conn,
                    "allocationPolicy": i.allocation_policy,
                    "linkedHubs": i.linked_hubs.iter().map(LinkedHub::without_credentials).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if env {
                println!("export DPS_ID_SCOPE='{}'", i.id_scope);
                println!("export DPS_SERVICE_HOST_NAME='{}'", i.service_host_name);
                println!("export DPS_CONNECTION_STRING='{conn}'");
            } else {
                print_instance(&i, &conn);
            }
        }
    }
    Ok(())
}

fn print_instance(i: &Instance, conn: &str) {
    println!("name:               {}", i.name);
    println!("ID scope:           {}", i.id_scope);
    println!("service host name:  {}", i.service_host_name);
    println!(
        "allocation policy:  {}",
        serde_json::to_value(i.allocation_policy).unwrap_or_default().as_str().unwrap_or("?")
    );
    if i.linked_hubs.is_empty() {
        println!("linked hubs:        (none)");
    }
    for hub in &i.linked_hubs {
        let location = hub.location.as_deref().map(|l| format!(", location {l}")).unwrap_or_default();
        println!("linked hub:         {} (weight {}{location})", hub.host_name, hub.allocation_weight);
    }
    println!("connection string:  {conn}");
}

/// The data dir's store when no server holds it (`None` while `dps serve` runs on it).
pub async fn open_if_free(global: &Global) -> anyhow::Result<Option<Dps>> {
    match open(global) {
        Ok(dps) => Ok(Some(dps)),
        Err(err) if err.downcast_ref::<store::DataDirInUse>().is_some() => Ok(None),
        Err(err) => Err(err),
    }
}

/// `dps hub ...` on the data dir of a stopped server (see `remote::hubs`).
pub async fn hub(dps: Dps, global: &Global, connect: &Connect, cmd: HubCommand) -> anyhow::Result<()> {
    store::ensure_default_instance(&dps, &global.service_host_name).await?;
    let target = store::instance_named(&dps, &connect.instance).await?;
    match cmd {
        HubCommand::List => {
            let hubs: Vec<_> = target.linked_hubs.iter().map(LinkedHub::without_credentials).collect();
            crate::remote::print_hubs(connect, &serde_json::to_value(hubs)?.as_array().cloned().unwrap_or_default());
        }
        HubCommand::Show { host } => {
            let hub = target
                .linked_hubs
                .iter()
                .find(|h| h.host_name.eq_ignore_ascii_case(&host))
                .with_context(|| format!("'{host}' is not linked to instance '{}'", target.name))?;
            println!("{}", serde_json::to_string_pretty(&hub.without_credentials())?);
        }
        HubCommand::Link { host, weight, location, no_auto_allocation, connector } => {
            crate::remote::offline_connector(&connector)?;
            let hub = LinkedHub {
                host_name: host.clone(),
                allocation_weight: weight,
                apply_allocation_policy: !no_auto_allocation,
                location,
                connector: None,
            };
            let written = dps
                .update_instance_as_operator(&target.id_scope, move |i| {
                    let mut hub = hub;
                    // Re-linking changes weight and location; a connector set through the service API stays.
                    hub.connector = i
                        .linked_hubs
                        .iter()
                        .find(|h| h.host_name.eq_ignore_ascii_case(&hub.host_name))
                        .and_then(|h| h.connector.clone());
                    i.linked_hubs.retain(|h| !h.host_name.eq_ignore_ascii_case(&hub.host_name));
                    i.linked_hubs.push(hub);
                    i.linked_hubs.sort_by(|a, b| a.host_name.cmp(&b.host_name));
                    Ok(())
                })
                .await
                .context("linking the hub")?;
            println!("instance '{}' now links {} hub(s); linked {host}", written.name, written.linked_hubs.len());
        }
        HubCommand::Unlink { host } => {
            let gone = host.clone();
            dps.update_instance_as_operator(&target.id_scope, move |i| {
                let before = i.linked_hubs.len();
                i.linked_hubs.retain(|h| !h.host_name.eq_ignore_ascii_case(&gone));
                if i.linked_hubs.len() == before {
                    return Err(dps_core::Error::not_found(format!("'{gone}' is not linked")));
                }
                Ok(())
            })
            .await
            .context("unlinking the hub")?;
            println!("unlinked {host} from instance '{}'", target.name);
        }
    }
    Ok(())
}

pub async fn token(global: &Global, cmd: TokenCommand) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let header = match cmd {
        TokenCommand::Service { connection_string, instance, ttl } => {
            let (host, key_name, key) = match (connection_string, instance) {
                (Some(conn), _) => parse_connection_string(&conn)?,
                (None, Some(name)) => {
                    let dps = open(global)?;
                    let i = store::instance_named(&dps, &name).await?;
                    parse_connection_string(&store::connection_string(&i)?)?
                }
                (None, None) => bail!("give --connection-string (or DPS_CONNECTION_STRING) or --instance"),
            };
            dps_core::sas::token(&host, &key, now + ttl, Some(&key_name))?
        }
        TokenCommand::Device { scope, registration_id, key, group_key, ttl } => {
            let key = match (key, group_key) {
                (Some(key), _) => key,
                (None, Some(group)) => dps_core::sas::derive_device_key(&group, &registration_id)?,
                (None, None) => bail!("give --key or --group-key"),
            };
            let resource = format!("{scope}/registrations/{registration_id}");
            dps_core::sas::token(&resource, &key, now + ttl, Some("registration"))?
        }
    };
    println!("{header}");
    Ok(())
}

/// `HostName=...;SharedAccessKeyName=...;SharedAccessKey=...` into (host, key name, key).
fn parse_connection_string(conn: &str) -> anyhow::Result<(String, String, String)> {
    let (mut host, mut name, mut key) = (None, None, None);
    for part in conn.split(';').filter(|p| !p.trim().is_empty()) {
        // Keys end in '=' padding: split at the first '=' only.
        let (k, v) = part.split_once('=').with_context(|| format!("malformed connection string part '{part}'"))?;
        match k.trim() {
            "HostName" => host = Some(v.trim().to_string()),
            "SharedAccessKeyName" => name = Some(v.trim().to_string()),
            "SharedAccessKey" => key = Some(v.trim().to_string()),
            _ => {}
        }
    }
    match (host, name, key) {
        (Some(h), Some(n), Some(k)) => Ok((h, n, k)),
        _ => bail!("the connection string needs HostName, SharedAccessKeyName and SharedAccessKey"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_keep_key_padding() {
        let (h, n, k) =
            parse_connection_string("HostName=localhost;SharedAccessKeyName=owner;SharedAccessKey=abc==").unwrap();
        assert_eq!((h.as_str(), n.as_str(), k.as_str()), ("localhost", "owner", "abc=="));
        assert!(parse_connection_string("HostName=localhost").is_err());
    }
}
