//! Instances, with their service host name and name reserved in index tables in the same transaction.

use dps_core::error::{Error, Result};
use dps_core::model::Instance;
use dps_core::store::{Precondition, key, new_etag};
use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use crate::tables::{INSTANCE_HOSTS, INSTANCE_NAMES, INSTANCES, current_etag, from_json, internal, to_json};

/// Create an instance; `Conflict` if its ID scope, service host name or name is taken.
pub(crate) fn create(txn: &WriteTransaction, mut instance: Instance) -> Result<Instance> {
    let scope = key(&instance.id_scope);
    let host = key(&instance.service_host_name);
    let mut instances = txn.open_table(INSTANCES).map_err(internal)?;
    let mut hosts = txn.open_table(INSTANCE_HOSTS).map_err(internal)?;
    let mut names = txn.open_table(INSTANCE_NAMES).map_err(internal)?;
    if instances.get(scope.as_str()).map_err(internal)?.is_some() {
        return Err(Error::Conflict(format!("ID scope '{}' is taken", instance.id_scope)));
    }
    if hosts.get(host.as_str()).map_err(internal)?.is_some() {
        return Err(Error::Conflict(format!("Host name '{}' is taken", instance.service_host_name)));
    }
    if names.get(instance.name.as_str()).map_err(internal)?.is_some() {
        return Err(Error::Conflict(format!("Instance name '{}' is taken", instance.name)));
    }
    instance.etag = Some(new_etag());
    instances.insert(scope.as_str(), to_json(&instance)?.as_slice()).map_err(internal)?;
    hosts.insert(host.as_str(), scope.as_str()).map_err(internal)?;
    names.insert(instance.name.as_str(), scope.as_str()).map_err(internal)?;
    Ok(instance)
}

pub(crate) fn update(txn: &WriteTransaction, mut instance: Instance, precondition: Precondition) -> Result<Instance> {
    let scope = key(&instance.id_scope);
    let mut instances = txn.open_table(INSTANCES).map_err(internal)?;
    let current = current_etag(&instances.get(scope.as_str()).map_err(internal)?)?;
    precondition.check("Instance", current.as_deref())?;
    instance.etag = Some(new_etag());
    instances.insert(scope.as_str(), to_json(&instance)?.as_slice()).map_err(internal)?;
    Ok(instance)
}

pub(crate) fn by_scope(txn: &ReadTransaction, scope: &str) -> Result<Option<Instance>> {
    let instances = txn.open_table(INSTANCES).map_err(internal)?;
    let found = instances.get(scope).map_err(internal)?;
    found.map(|v| from_json(v.value())).transpose()
}

pub(crate) fn by_host(txn: &ReadTransaction, host: &str) -> Result<Option<Instance>> {
    let hosts = txn.open_table(INSTANCE_HOSTS).map_err(internal)?;
    let Some(scope) = hosts.get(host).map_err(internal)?.map(|v| v.value().to_string()) else {
        return Ok(None);
    };
    by_scope(txn, &scope)
}

pub(crate) fn all(txn: &ReadTransaction) -> Result<Vec<Instance>> {
    let instances = txn.open_table(INSTANCES).map_err(internal)?;
    let mut out = Vec::new();
    for entry in instances.iter().map_err(internal)? {
        out.push(from_json(entry.map_err(internal)?.1.value())?);
    }
    Ok(out)
}
