//! The data dir: opening the embedded store (one process at a time) and the first-run `default` instance.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use dps_core::model::Instance;
use dps_core::usecases::NewInstance;
use dps_core::{Dps, Settings};
use dps_custom_allocation::{DirStorage, PolicyAllocator, PolicySettings};
use dps_store_embedded::EmbeddedStore;

/// Name of the instance created on first run.
pub const DEFAULT_INSTANCE: &str = "default";
/// The all-rights policy every instance is created with (the name Azure uses).
const OWNER_POLICY: &str = "provisioningserviceowner";

/// Open the data dir's store. The embedded database admits one process: while `dps serve` runs, the operator
/// commands are refused with a message saying so.
/// `permit_private_webhooks`: the deployment-level switch for webhooks on private addresses (see `--help`).
pub fn open(data_dir: &Path, settings: Settings, permit_private_webhooks: bool) -> anyhow::Result<Dps> {
    create_private_dir(data_dir)?;
    let store = EmbeddedStore::open(data_dir).map_err(|err| {
        let text = err.to_string();
        if text.to_ascii_lowercase().contains("already open") || text.to_ascii_lowercase().contains("lock") {
            anyhow::Error::new(DataDirInUse(format!(
                "the data dir {} is in use by another process (a running `dps serve`?); stop it first, or use the \
                 service API while it runs ({text})",
                data_dir.display()
            )))
        } else {
            anyhow::anyhow!("cannot open the data dir {}: {text}", data_dir.display())
        }
    })?;
    // Custom allocation (WebAssembly policies and webhooks); modules live in the data dir, stored by content hash.
    let mut policy_settings = PolicySettings::default();
    policy_settings.webhooks.permit_private_targets = permit_private_webhooks;
    let policies = PolicyAllocator::new(Arc::new(DirStorage::new(data_dir.join("policies"))), policy_settings)
        .context("starting the custom allocation sandbox")?;
    let policies = Arc::new(policies);
    Ok(Dps::new(Arc::new(store), settings).with_allocator(policies.clone()).with_policies(policies))
}

/// The data dir is held by another process (a running `dps serve`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DataDirInUse(String);

/// Create the `default` instance when the data dir has no instance yet. Returns every instance.
pub async fn ensure_default_instance(dps: &Dps, service_host_name: &str) -> anyhow::Result<Vec<Instance>> {
    let instances = dps.list_instances().await?;
    if !instances.is_empty() {
        return Ok(instances);
    }
    let created = dps
        .create_instance(NewInstance {
            name: DEFAULT_INSTANCE.into(),
            service_host_name: service_host_name.into(),
            id_scope: None,
        })
        .await
        .with_context(|| format!("creating the '{DEFAULT_INSTANCE}' instance"))?;
    tracing::info!(id_scope = %created.id_scope, host = %created.service_host_name, "created the default instance");
    Ok(vec![created])
}

/// Find an instance by name (case-insensitive).
pub async fn instance_named(dps: &Dps, name: &str) -> anyhow::Result<Instance> {
    let all = dps.list_instances().await?;
    match all.into_iter().find(|i| i.name.eq_ignore_ascii_case(name)) {
        Some(found) => Ok(found),
        None => bail!("no instance named '{name}' (see `dps instance list`)"),
    }
}

/// The owner policy's connection string, as the Azure SDKs take it.
pub fn connection_string(instance: &Instance) -> anyhow::Result<String> {
    let policy = instance
        .authorization_policies
        .iter()
        .find(|p| p.key_name == OWNER_POLICY)
        .or_else(|| instance.authorization_policies.first())
        .context("the instance has no shared access policy")?;
    Ok(format!(
        "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
        instance.service_host_name, policy.key_name, policy.primary_key
    ))
}

/// Create a directory (and parents) readable by its owner only: it holds keys.
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_open_creates_one_default_instance_and_a_second_process_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let dps = open(dir.path(), Settings::default(), false).unwrap();
        let first = ensure_default_instance(&dps, "localhost").await.unwrap();
        let again = ensure_default_instance(&dps, "localhost").await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].id_scope, again[0].id_scope);
        let conn = connection_string(&first[0]).unwrap();
        assert!(conn.starts_with("HostName=localhost;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey="));

        let err =
            open(dir.path(), Settings::default(), false).err().expect("second open must fail while the first holds it");
        assert!(err.to_string().contains("in use"), "{err}");
    }
}
