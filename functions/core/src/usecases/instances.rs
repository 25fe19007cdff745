//! Instances as the operator makes and changes them (command line, `dps-admin`; no caller, no service API), and
//! the rules every change of an instance meets, whichever way it comes (operator or `/config`).

use super::{Dps, now};
use crate::error::{Error, Result};
use crate::ids::{new_id_scope, validate_host_name, validate_name};
use crate::model::{AccessPolicy, AllocationPolicy, CustomAllocationDefinition, Instance, Right};
use crate::sas::generate_key;
use crate::store::Precondition;

/// Name of the all-rights policy every new instance gets.
pub const OWNER_POLICY: &str = "provisioningserviceowner";
/// Most linked hubs per instance (Azure's limit).
pub const MAX_LINKED_HUBS: usize = 50;
/// What the operator supplies to create an instance.
#[derive(Debug, Clone, Default)]
pub struct NewInstance {
    /// Human name, unique.
    pub name: String,
    /// Host name that routes service API calls to it.
    pub service_host_name: String,
    /// ID scope; generated when absent.
    pub id_scope: Option<String>,
}

impl Dps {
    /// Operator path: create an instance with a generated ID scope and an all-rights owner policy.
    pub async fn create_instance(&self, new: NewInstance) -> Result<Instance> {
        validate_name("instance name", &new.name)?;
        validate_host_name(&new.service_host_name)?;
        let id_scope = match new.id_scope {
            Some(scope) if crate::ids::is_id_scope(&scope) => scope,
            Some(_) => return Err(Error::invalid("An ID scope is 3 to 32 letters and digits")),
            None => new_id_scope(),
        };
        let instance = Instance {
            name: new.name,
            id_scope,
            service_host_name: new.service_host_name.to_ascii_lowercase(),
            allocation_policy: AllocationPolicy::Hashed,
            custom_allocation_definition: None,
            linked_hubs: Vec::new(),
            authorization_policies: vec![AccessPolicy {
                key_name: OWNER_POLICY.into(),
                primary_key: generate_key(),
                secondary_key: generate_key(),
                rights: Right::ALL.to_vec(),
            }],
            ca_certificates: Vec::new(),
            allow_private_webhook_targets: false,
            webhook_signing_key: Some(generate_key()),
            etag: None,
            created_date_time_utc: Some(now()),
        };
        self.store.create_instance(instance).await
    }

    /// Operator path: every instance.
    pub async fn list_instances(&self) -> Result<Vec<Instance>> {
        self.store.list_instances().await
    }

    /// Operator path: change an instance directly (no caller), e.g. to link hubs from the command line.
    pub async fn update_instance_as_operator(
        &self,
        scope: &str,
        change: impl FnOnce(&mut Instance) -> Result<()>,
    ) -> Result<Instance> {
        let mut instance = self
            .store
            .instance_by_scope(scope)
            .await?
            .ok_or_else(|| Error::not_found(format!("No instance with ID scope '{scope}'")))?;
        let etag = instance.etag.clone().unwrap_or_default();
        let before = instance.clone();
        change(&mut instance)?;
        if (&before.id_scope, &before.name, &before.service_host_name)
            != (&instance.id_scope, &instance.name, &instance.service_host_name)
        {
            return Err(Error::invalid("An instance's ID scope, name and service host name cannot change"));
        }
        self.check_instance(&before, &instance).await?;
        let written = self.store.update_instance(instance, Precondition::Matches(etag)).await?;
        self.cache.forget_instance(scope);
        Ok(written)
    }

    /// Validate a custom allocation definition (shape here, the rest by the allocator).
    pub(crate) async fn check_custom_definition(
        &self,
        instance: &Instance,
        d: &CustomAllocationDefinition,
    ) -> Result<()> {
        match (&d.webhook_url, &d.api_version, &d.policy_name) {
            (Some(_), Some(_), None) | (None, _, Some(_)) => {}
            (Some(_), None, None) => {
                return Err(Error::invalid("customAllocationDefinition.apiVersion is required with webhookUrl"));
            }
            (Some(_), _, Some(_)) => {
                return Err(Error::invalid("customAllocationDefinition takes webhookUrl or policyName, not both"));
            }
            (None, _, None) => {
                return Err(Error::invalid("customAllocationDefinition needs webhookUrl or policyName"));
            }
        }
        match &self.allocator {
            Some(allocator) => allocator.check_definition(instance, d).await,
            None => Err(Error::invalid("Custom allocation is not available in this deployment")),
        }
    }

    /// Validate a changed instance. The custom allocation default is checked only when it changes, so that an
    /// unrelated change (revoking a key, linking a hub) never fails because a policy was deleted since.
    pub(super) async fn check_instance(&self, before: &Instance, instance: &Instance) -> Result<()> {
        if instance.linked_hubs.len() > MAX_LINKED_HUBS {
            return Err(Error::invalid(format!("At most {MAX_LINKED_HUBS} linked hubs")));
        }
        let mut seen = std::collections::HashSet::new();
        for hub in &instance.linked_hubs {
            validate_host_name(&hub.host_name)?;
            if !(1..=1000).contains(&hub.allocation_weight) {
                return Err(Error::invalid("allocationWeight must be 1 to 1000"));
            }
            if !seen.insert(hub.host_name.to_ascii_lowercase()) {
                return Err(Error::invalid(format!("Linked hub '{}' appears twice", hub.host_name)));
            }
        }
        if !instance.authorization_policies.iter().any(|p| p.rights.contains(&Right::ServiceConfig)) {
            return Err(Error::Conflict("At least one access policy must keep the ServiceConfig right".into()));
        }
        let unchanged = before.allocation_policy == instance.allocation_policy
            && before.custom_allocation_definition == instance.custom_allocation_definition;
        match (instance.allocation_policy, &instance.custom_allocation_definition) {
            (AllocationPolicy::Custom, None) => {
                Err(Error::invalid("The custom default policy needs a customAllocationDefinition"))
            }
            _ if unchanged => Ok(()),
            (_, Some(d)) => self.check_custom_definition(instance, d).await,
            _ => Ok(()),
        }
    }
}
