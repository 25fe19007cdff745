//! What the tests and benchmarks of every crate share (feature `testing`): an instance made and linked to hubs
//! through the operator's use cases, and its owner as the service API authenticates it. The one copy of "create
//! an instance, link a hub, make an owner token"; helpers panic on failure, as test set-up does.

use crate::model::{Instance, LinkedHub};
use crate::usecases::{NewInstance, now};
use crate::{Caller, Dps, sas};

/// Name of the all-rights policy of a new instance.
pub const OWNER: &str = crate::usecases::OWNER_POLICY;

/// A linked hub that only records (no connector): weight 1, applying the allocation policy, no location.
pub fn hub(host_name: &str) -> LinkedHub {
    LinkedHub {
        host_name: host_name.into(),
        allocation_weight: 1,
        apply_allocation_policy: true,
        location: None,
        connector: None,
    }
}

/// Create an instance named `name` served at `host` and link `hubs` to it, as the operator does; returns it as
/// stored (its policies with their keys).
pub async fn instance(dps: &Dps, name: &str, host: &str, hubs: Vec<LinkedHub>) -> Instance {
    let created = dps
        .create_instance(NewInstance { name: name.into(), service_host_name: host.into(), id_scope: None })
        .await
        .expect("create instance");
    dps.update_instance_as_operator(&created.id_scope, move |i| {
        i.linked_hubs = hubs;
        Ok(())
    })
    .await
    .expect("link hubs")
}

/// The primary key of `instance`'s owner policy.
pub fn owner_key(instance: &Instance) -> String {
    instance.authorization_policies.iter().find(|p| p.key_name == OWNER).expect("owner policy").primary_key.clone()
}

/// A service SAS token of `instance`'s owner policy for its service host, valid for an hour.
pub fn owner_token(instance: &Instance) -> String {
    service_token(&instance.service_host_name, &owner_key(instance), OWNER)
}

/// A service SAS token for `host` signed with `key` of the policy `key_name`, valid for an hour.
pub fn service_token(host: &str, key: &str, key_name: &str) -> String {
    sas::token(host, key, in_an_hour(), Some(key_name)).expect("service token")
}

/// `instance`'s owner, authenticated by the service with [`owner_token`].
pub async fn owner(dps: &Dps, instance: &Instance) -> Caller {
    let host = &instance.service_host_name;
    dps.authenticate_service(host, "/", Some(&owner_token(instance))).await.expect("owner token")
}

/// A device's SAS token for `{scope}/registrations/{registration_id}`, signed with its key, expiring at `expiry`.
pub fn device_token(scope: &str, registration_id: &str, key: &str, expiry: i64) -> String {
    let resource = format!("{scope}/registrations/{registration_id}");
    sas::token(&resource, key, expiry, Some("registration")).expect("device token")
}

/// Unix time an hour from now: the expiry of the tokens made here.
pub fn in_an_hour() -> i64 {
    now().unix_timestamp() + 3600
}
