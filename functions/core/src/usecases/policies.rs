//! Service API use cases for WebAssembly allocation policies (ServiceConfig right).

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Caller, Dps};
use crate::allocator::AllocationRequest;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ids::{printable, validate_name};
use crate::model::{OperationKind, Right};
use crate::policy::{DryRun, PolicyInfo, PolicyRegistry};

impl Dps {
    /// Enable the policy service API with this registry (usually the same object as the custom allocator).
    pub fn with_policies(mut self, policies: Arc<dyn PolicyRegistry>) -> Self {
        self.policies = Some(policies);
        self
    }

    fn policy_registry(&self, caller: &Caller) -> Result<&Arc<dyn PolicyRegistry>> {
        caller.require(Right::ServiceConfig)?;
        self.policies
            .as_ref()
            .ok_or_else(|| Error::invalid("WebAssembly policies are not available in this deployment"))
    }

    /// Upload (create or replace) a policy module.
    pub async fn upload_policy(&self, caller: &Caller, name: &str, module: Vec<u8>) -> Result<PolicyInfo> {
        let registry = self.policy_registry(caller)?;
        validate_name("policy name", name)?;
        let info = registry.upload(&caller.instance, name, module).await?;
        self.meter(caller.scope(), OperationKind::ServiceOperation).await;
        self.emit(|| Event::policy_uploaded(caller.scope(), &info)).await;
        Ok(info)
    }

    /// Every policy of the caller's instance.
    pub async fn list_policies(&self, caller: &Caller) -> Result<Vec<PolicyInfo>> {
        let registry = self.policy_registry(caller)?;
        let list = registry.list(&caller.instance).await?;
        self.meter(caller.scope(), OperationKind::ServiceOperation).await;
        Ok(list)
    }

    /// One policy's metadata.
    pub async fn get_policy(&self, caller: &Caller, name: &str) -> Result<PolicyInfo> {
        let registry = self.policy_registry(caller)?;
        let info = registry.get(&caller.instance, name).await?.ok_or_else(|| no_policy(name))?;
        self.meter(caller.scope(), OperationKind::ServiceOperation).await;
        Ok(info)
    }

    /// Delete a policy. Enrollments that name it stay as they are; their registrations fail (error 400240)
    /// until a policy of that name is uploaded again.
    pub async fn delete_policy(&self, caller: &Caller, name: &str) -> Result<()> {
        let registry = self.policy_registry(caller)?;
        if !registry.delete(&caller.instance, name).await? {
            return Err(no_policy(name));
        }
        self.meter(caller.scope(), OperationKind::ServiceOperation).await;
        self.emit(|| Event::policy_deleted(caller.scope(), name)).await;
        Ok(())
    }

    /// Evaluate a policy on a sample AllocationRequest. A request without `linkedHubs` gets the instance's
    /// linked hubs.
    pub async fn dry_run_policy(&self, caller: &Caller, name: &str, mut request: Value) -> Result<DryRun> {
        let registry = self.policy_registry(caller)?;
        let Some(object) = request.as_object_mut() else {
            return Err(Error::invalid("A dry run takes an AllocationRequest JSON object"));
        };
        if !object.get("deviceRuntimeContext").is_some_and(|c| c.get("registrationId").is_some_and(Value::is_string)) {
            return Err(Error::invalid("The AllocationRequest needs deviceRuntimeContext.registrationId"));
        }
        if !object.contains_key("linkedHubs") {
            let hubs: Vec<&str> = caller.instance.linked_hubs.iter().map(|h| h.host_name.as_str()).collect();
            object.insert("linkedHubs".into(), json!(hubs));
        }
        let request: AllocationRequest = serde_json::from_value(request).map_err(|e| {
            Error::invalid(format!("The AllocationRequest is not valid: {}", crate::ids::printable(&e.to_string())))
        })?;
        let run = registry.dry_run(&caller.instance, name, &request).await?;
        self.meter(caller.scope(), OperationKind::ServiceOperation).await;
        Ok(run)
    }
}

impl Dps {
    /// The instance's webhook signing key (base64): the HMAC-SHA256 key of the `x-dps-signature-256` header on
    /// webhook calls, which receivers need to verify them. Read from the store, never from a cached copy.
    pub async fn webhook_signing_key(&self, caller: &Caller) -> Result<String> {
        caller.require(Right::ServiceConfig)?;
        self.fresh_instance(caller)
            .await?
            .webhook_signing_key
            .clone()
            .ok_or_else(|| Error::not_found("This instance has no webhook signing key; its webhook calls are unsigned"))
    }
}

fn no_policy(name: &str) -> Error {
    Error::not_found(format!("No policy named '{}'", printable(name)))
}
