//! Instance configuration through our `/config` extension of the service API: the configuration, linked hubs,
//! access policies and operation counts of the caller's instance. The operator's path and the rules every change
//! of an instance meets are in `instances.rs`.

use serde::{Deserialize, Serialize};

use super::{Caller, Dps};
use crate::error::{Error, Result};
use crate::ids::{printable, validate_name};
use crate::model::{
    AccessPolicy, AllocationPolicy, CustomAllocationDefinition, Instance, LinkedHub, OperationCount, Right,
};
use crate::sas::{generate_key, validate_key};
use crate::store::Precondition;

/// Longest range of days one operations query covers.
pub const MAX_OPERATION_DAYS: i64 = 366;

/// The instance configuration as the service API shows and accepts it (keys are never shown here).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceConfig {
    /// Instance name (read-only).
    #[serde(default)]
    pub name: String,
    /// ID scope (read-only).
    #[serde(default)]
    pub id_scope: String,
    /// Service host name (read-only).
    #[serde(default)]
    pub service_host_name: String,
    /// Default allocation policy.
    #[serde(default)]
    pub allocation_policy: AllocationPolicy,
    /// Default custom allocation target.
    pub custom_allocation_definition: Option<CustomAllocationDefinition>,
    /// Linked hubs.
    #[serde(default)]
    pub linked_hubs: Vec<LinkedHub>,
    /// Let webhooks reach private, loopback and link-local addresses.
    #[serde(default)]
    pub allow_private_webhook_targets: bool,
    /// Version tag (read-only).
    pub etag: Option<String>,
}

impl From<&Instance> for InstanceConfig {
    fn from(i: &Instance) -> Self {
        Self {
            name: i.name.clone(),
            id_scope: i.id_scope.clone(),
            service_host_name: i.service_host_name.clone(),
            allocation_policy: i.allocation_policy,
            custom_allocation_definition: i.custom_allocation_definition.clone(),
            linked_hubs: i.linked_hubs.iter().map(LinkedHub::without_credentials).collect(),
            allow_private_webhook_targets: i.allow_private_webhook_targets,
            etag: i.etag.clone(),
        }
    }
}

impl Dps {
    /// The caller's instance configuration.
    pub async fn get_config(&self, caller: &Caller) -> Result<InstanceConfig> {
        caller.require(Right::ServiceConfig)?;
        Ok(self.fresh_instance(caller).await?.as_ref().into())
    }

    /// Replace the allocation settings and linked hubs of the caller's instance.
    pub async fn put_config(
        &self,
        caller: &Caller,
        config: InstanceConfig,
        if_match: Option<&str>,
    ) -> Result<InstanceConfig> {
        caller.require(Right::ServiceConfig)?;
        let mut linked_hubs = config.linked_hubs;
        self.prepare_linked_hubs(&*self.fresh_instance(caller).await?, &mut linked_hubs).await?;
        let written = self
            .change_instance(caller, if_match, |i| {
                i.allocation_policy = config.allocation_policy;
                i.custom_allocation_definition = config.custom_allocation_definition;
                i.linked_hubs = linked_hubs;
                i.allow_private_webhook_targets = config.allow_private_webhook_targets;
                Ok(())
            })
            .await?;
        Ok((&written).into())
    }

    /// One linked hub, by host name (case-insensitive), without its connector's credentials.
    pub async fn get_linked_hub(&self, caller: &Caller, host_name: &str) -> Result<LinkedHub> {
        caller.require(Right::ServiceConfig)?;
        let instance = self.fresh_instance(caller).await?;
        instance
            .linked_hubs
            .iter()
            .find(|h| h.host_name.eq_ignore_ascii_case(host_name))
            .map(LinkedHub::without_credentials)
            .ok_or_else(|| Error::not_found(format!("Linked hub '{}' not found", printable(host_name))))
    }

    /// Add or replace one linked hub (its host name is kept in lower case).
    pub async fn put_linked_hub(&self, caller: &Caller, mut hub: LinkedHub) -> Result<LinkedHub> {
        caller.require(Right::ServiceConfig)?;
        hub.host_name.make_ascii_lowercase();
        let host = hub.host_name.clone();
        let mut prepared = [hub];
        self.prepare_linked_hubs(&*self.fresh_instance(caller).await?, &mut prepared).await?;
        let [hub] = prepared;
        let written = self
            .change_instance(caller, None, |i| {
                i.linked_hubs.retain(|h| !h.host_name.eq_ignore_ascii_case(&host));
                i.linked_hubs.push(hub);
                i.linked_hubs.sort_by(|a, b| a.host_name.cmp(&b.host_name));
                Ok(())
            })
            .await?;
        let written =
            written.linked_hubs.iter().find(|h| h.host_name.eq_ignore_ascii_case(&host)).expect("just written");
        Ok(written.without_credentials())
    }

    /// Remove one linked hub (devices keep their records; later registrations no longer pick it).
    pub async fn delete_linked_hub(&self, caller: &Caller, host_name: &str) -> Result<()> {
        caller.require(Right::ServiceConfig)?;
        let named = |h: &LinkedHub| h.host_name.eq_ignore_ascii_case(host_name);
        let missing = || Error::not_found(format!("Linked hub '{}' not found", printable(host_name)));
        self.remove_entries(caller, |i| &mut i.linked_hubs, named, missing).await
    }

    /// Names and rights of the shared access policies (keys left empty, so not serialized).
    pub async fn list_access_policies(&self, caller: &Caller) -> Result<Vec<AccessPolicy>> {
        caller.require(Right::ServiceConfig)?;
        let instance = self.fresh_instance(caller).await?;
        Ok(instance.authorization_policies.iter().map(without_keys).collect())
    }

    /// Add or replace a shared access policy; missing keys are generated (or kept when replacing).
    /// Returns the policy with its keys.
    pub async fn put_access_policy(&self, caller: &Caller, mut policy: AccessPolicy) -> Result<AccessPolicy> {
        caller.require(Right::ServiceConfig)?;
        validate_name("policy name", &policy.key_name)?;
        let name = policy.key_name.clone();
        let written = self
            .change_instance(caller, None, |i| {
                let old = i.authorization_policies.iter().find(|p| p.key_name.eq_ignore_ascii_case(&name));
                for (key, old_key) in [
                    (&mut policy.primary_key, old.map(|p| p.primary_key.clone())),
                    (&mut policy.secondary_key, old.map(|p| p.secondary_key.clone())),
                ] {
                    if key.is_empty() {
                        *key = old_key.unwrap_or_else(generate_key);
                    }
                    validate_key(key)?;
                }
                i.authorization_policies.retain(|p| !p.key_name.eq_ignore_ascii_case(&name));
                i.authorization_policies.push(policy);
                Ok(())
            })
            .await?;
        Ok(written.authorization_policies.into_iter().find(|p| p.key_name == name).expect("just written"))
    }

    /// Read one shared access policy with its keys.
    pub async fn get_access_policy(&self, caller: &Caller, name: &str) -> Result<AccessPolicy> {
        caller.require(Right::ServiceConfig)?;
        let instance = self.fresh_instance(caller).await?;
        instance
            .authorization_policies
            .iter()
            .find(|p| p.key_name.eq_ignore_ascii_case(name))
            .cloned()
            .ok_or_else(|| Error::not_found(format!("Access policy '{}' not found", printable(name))))
    }

    /// Remove a shared access policy; the last policy with ServiceConfig cannot be removed.
    pub async fn delete_access_policy(&self, caller: &Caller, name: &str) -> Result<()> {
        caller.require(Right::ServiceConfig)?;
        let named = |p: &AccessPolicy| p.key_name.eq_ignore_ascii_case(name);
        let missing = || Error::not_found(format!("Access policy '{}' not found", printable(name)));
        self.remove_entries(caller, |i| &mut i.authorization_policies, named, missing).await
    }

    /// Operations counted per day and kind for `from..=to` (`YYYY-MM-DD`).
    pub async fn operations(&self, caller: &Caller, from: &str, to: &str) -> Result<Vec<OperationCount>> {
        caller.require(Right::ServiceConfig)?;
        let (start, end) = (parse_day(from)?, parse_day(to)?);
        if end < start {
            return Err(Error::invalid("'to' is before 'from'"));
        }
        if (end - start).whole_days() >= MAX_OPERATION_DAYS {
            return Err(Error::invalid(format!("At most {MAX_OPERATION_DAYS} days per query")));
        }
        self.store.operations(caller.scope(), from, to).await
    }

    /// Re-read the caller's instance from the store (config calls must not act on a cached copy).
    pub(crate) async fn fresh_instance(&self, caller: &Caller) -> Result<std::sync::Arc<Instance>> {
        self.store
            .instance_by_scope(caller.scope())
            .await?
            .map(std::sync::Arc::new)
            .ok_or_else(|| Error::not_found("Instance not found"))
    }

    /// Remove the entries of one of the instance's lists (`list`) that `matches` picks; `missing`'s error (a
    /// `NotFound`) if there were none.
    pub(super) async fn remove_entries<T>(
        &self,
        caller: &Caller,
        list: impl FnOnce(&mut Instance) -> &mut Vec<T>,
        matches: impl Fn(&T) -> bool,
        missing: impl FnOnce() -> Error,
    ) -> Result<()> {
        self.change_instance(caller, None, |i| {
            let items = list(i);
            let before = items.len();
            items.retain(|item| !matches(item));
            if items.len() == before {
                return Err(missing());
            }
            Ok(())
        })
        .await
        .map(drop)
    }

    pub(super) async fn change_instance(
        &self,
        caller: &Caller,
        if_match: Option<&str>,
        change: impl FnOnce(&mut Instance) -> Result<()>,
    ) -> Result<Instance> {
        let before = self.fresh_instance(caller).await?;
        let mut instance = (*before).clone();
        let current = instance.etag.clone().unwrap_or_default();
        if let Some(tag) = if_match {
            Precondition::Matches(tag.into()).check("Instance configuration", Some(&current))?;
        }
        change(&mut instance)?;
        self.check_instance(&before, &instance).await?;
        let written = self.store.update_instance(instance, Precondition::Matches(current)).await?;
        self.cache.forget_instance(caller.scope());
        Ok(written)
    }
}

fn without_keys(p: &AccessPolicy) -> AccessPolicy {
    AccessPolicy { primary_key: String::new(), secondary_key: String::new(), ..p.clone() }
}

fn parse_day(day: &str) -> Result<time::Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(day, &format).map_err(|_| Error::invalid(format!("'{day}' is not a YYYY-MM-DD date")))
}
