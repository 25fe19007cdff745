//! Instances. Each has its own partition; its name and service host name are reserved by two more items
//! written in the same transaction, and the host item holds a copy of the instance so that the service API
//! finds an instance by host in one read.

use dps_core::model::Instance;
use dps_core::store::{Precondition, key, new_etag};
use dps_core::{Error, Result};

use crate::item::{self, Condition, Item, condition_failed, put_condition};
use crate::layout;
use crate::{DynamoStore, TransactFailure, errors};

/// An instance from its item: `doc`, with the access policies of `accessKeys` (items written before that
/// attribute existed hold them in `doc`).
fn decode(found: &Item) -> Result<Instance> {
    let mut instance: Instance = item::decode(found)?;
    if let Some(keys) = item::get_s(found, layout::ACCESS_KEYS) {
        instance.authorization_policies = serde_json::from_str(keys)
            .map_err(|e| Error::internal(format!("cannot decode stored access policies: {e}")))?;
    }
    Ok(instance)
}

/// The item of `instance` at `key`: its access policies in their own attribute, the rest in `doc`.
fn split_item(
    key: &layout::ItemKey,
    kind: &'static str,
    index: Option<&layout::IndexKey>,
    instance: &Instance,
    etag: &str,
) -> Result<Item> {
    let policies = serde_json::to_string(&instance.authorization_policies)
        .map_err(|e| Error::internal(format!("cannot encode access policies: {e}")))?;
    let rest = Instance { authorization_policies: Vec::new(), ..instance.clone() };
    let mut item = item::entity_item(key, kind, index, etag, &rest)?;
    item.insert(layout::ACCESS_KEYS.into(), item::s(policies));
    Ok(item)
}

fn instance_item(instance: &Instance, etag: &str) -> Result<Item> {
    let scope = &instance.id_scope;
    let mut item =
        split_item(&layout::instance(scope), "instance", Some(&layout::instance_index(scope)), instance, etag)?;
    item.insert(layout::NAME_KEY.into(), item::s(key(&instance.name)));
    item.insert(layout::HOST_KEY.into(), item::s(key(&instance.service_host_name)));
    Ok(item)
}

fn host_item(instance: &Instance, etag: &str) -> Result<Item> {
    let mut item =
        split_item(&layout::instance_host(&instance.service_host_name), "instanceHost", None, instance, etag)?;
    item.insert(layout::SCOPE.into(), item::s(key(&instance.id_scope)));
    Ok(item)
}

impl DynamoStore {
    pub(crate) async fn insert_instance(&self, mut instance: Instance) -> Result<Instance> {
        self.check_writable()?;
        let etag = new_etag();
        instance.etag = Some(etag.clone());
        let scope = instance.id_scope.clone();
        let mut name_item = item::key_of(&layout::instance_name(&instance.name));
        name_item.insert(layout::TYPE.into(), item::s("instanceName"));
        name_item.insert(layout::SCOPE.into(), item::s(key(&scope)));
        let new = put_condition(&Precondition::NotExists);
        let items = vec![
            self.transact_put(instance_item(&instance, &etag)?, new.clone())?,
            self.transact_put(name_item, new.clone())?,
            self.transact_put(host_item(&instance, &etag)?, new)?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(instance),
            Err(TransactFailure::Condition { index, .. }) => Err(Error::Conflict(match index {
                0 => format!("An instance with ID scope '{scope}' already exists"),
                1 => format!("An instance named '{}' already exists", instance.name),
                _ => format!("An instance with service host name '{}' already exists", instance.service_host_name),
            })),
            Err(TransactFailure::Error(err)) => Err(err),
        }
    }

    pub(crate) async fn save_instance(&self, mut instance: Instance, precondition: Precondition) -> Result<Instance> {
        self.check_writable()?;
        let scope = instance.id_scope.clone();
        let what = format!("Instance '{scope}'");
        if precondition == Precondition::NotExists {
            let exists = self.get_item(&layout::instance(&scope)).await?.is_some();
            return Err(condition_failed(&precondition, &what, exists));
        }
        let etag = new_etag();
        instance.etag = Some(etag.clone());
        // The name and host name are immutable: the stored ones must be the ones written.
        let mut guard = Condition::must_exist()
            .and(Condition::equals(layout::NAME_KEY, &key(&instance.name)))
            .and(Condition::equals(layout::HOST_KEY, &key(&instance.service_host_name)));
        if let Some(version) = put_condition(&precondition) {
            guard = guard.and(version);
        }
        let host_guard = Condition::must_exist().and(Condition::equals(layout::SCOPE, &key(&scope)));
        let items = vec![
            self.transact_put(instance_item(&instance, &etag)?, Some(guard))?,
            self.transact_put(host_item(&instance, &etag)?, Some(host_guard))?,
        ];
        match self.transact(items).await {
            Ok(()) => Ok(instance),
            // The instance item checks the host name too, so the host item alone failing means a damaged table.
            Err(TransactFailure::Condition { index: 1.., .. }) => {
                tracing::error!(scope = %scope, "instance host item missing or owned by another scope");
                Err(Error::internal(format!("{what}: its host name item is inconsistent")))
            }
            Err(TransactFailure::Condition { old: None, .. }) => Err(Error::not_found(format!("{what} not found"))),
            Err(TransactFailure::Condition { old: Some(old), .. }) => {
                let same = |attribute: &str, value: &str| item::get_s(&old, attribute) == Some(key(value).as_str());
                if !same(layout::NAME_KEY, &instance.name) || !same(layout::HOST_KEY, &instance.service_host_name) {
                    Err(Error::invalid("The name and service host name of an instance cannot change"))
                } else {
                    Err(condition_failed(&precondition, &what, true))
                }
            }
            Err(TransactFailure::Error(err)) => Err(err),
        }
    }

    pub(crate) async fn instance_of_scope(&self, scope: &str) -> Result<Option<Instance>> {
        let key = layout::instance(scope);
        let found = match self.access_keys {
            true => self.get_item(&key).await?,
            // The only attributes the device function's role may read (template.yaml, InstanceByScope).
            false => self.get_attributes(&key, &[layout::DOC, layout::ETAG]).await?,
        };
        found.map(|i| decode(&i)).transpose()
    }

    pub(crate) async fn instance_of_host(&self, host: &str) -> Result<Option<Instance>> {
        self.get_item(&layout::instance_host(host)).await?.map(|i| decode(&i)).transpose()
    }

    /// Every instance, through the index (instances are few: one index partition holds them all).
    pub(crate) async fn instance_list(&self) -> Result<Vec<Instance>> {
        let found = self
            .client
            .query()
            .table_name(&*self.table)
            .index_name(layout::GSI1)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", layout::GSI1PK)
            .expression_attribute_values(":pk", item::s(layout::INSTANCES_INDEX_PK))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| errors::sdk("Query", e))?;
        found.iter().filter(|i| crate::listing::in_place(i, layout::instance)).map(decode).collect()
    }

    /// A store that reads instances without their access keys would write them back without.
    fn check_writable(&self) -> Result<()> {
        match self.access_keys {
            true => Ok(()),
            false => Err(Error::internal("this store reads instances without access keys and cannot write them")),
        }
    }
}
