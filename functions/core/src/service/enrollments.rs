//! Service API use cases: individual enrollments, enrollment groups and registration records.

use std::collections::HashSet;

use async_trait::async_trait;

use super::{Caller, Dps, now};
use crate::error::{Error, Result};
use crate::ids::{printable, validate_host_name, validate_id};
use crate::model::{
    AllocationPolicy, AttestationMechanism, AttestationType, EnrollmentGroup, EnrollmentSpec, IndividualEnrollment,
    Instance, RegistrationRecord, Right, SymmetricKeyAttestation,
};
use crate::sas::{generate_key, validate_key};
use crate::store::{Page, PageRequest, Precondition, Store};

/// Page size when the caller sends no `x-ms-max-item-count`.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page served.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Most items in one bulk operation (Azure's limit).
pub const MAX_BULK_ITEMS: usize = 10;

/// Bulk operation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BulkMode {
    /// Create; fails for items that exist.
    Create,
    /// Create or replace.
    Update,
    /// Replace only if the item's etag matches.
    #[serde(rename = "updateIfMatchETag")]
    UpdateIfMatchEtag,
    /// Delete.
    Delete,
}

/// One failed item of a bulk operation.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkItemResult {
    /// The item's registration ID or group ID.
    pub id: String,
    /// Why it failed.
    pub error: Error,
}

/// Result of a bulk operation: good items are committed, bad ones listed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BulkOutcome {
    /// The items that failed.
    pub errors: Vec<BulkItemResult>,
}

/// What individual enrollments and groups have in common for the service API.
#[async_trait]
pub(crate) trait EnrollmentKind: Clone + Send + Sync + 'static {
    const WHAT: &'static str;
    const ID_NAME: &'static str;
    fn id(&self) -> &str;
    fn spec(&self) -> &EnrollmentSpec;
    fn spec_mut(&mut self) -> &mut EnrollmentSpec;
    fn check_kind_rules(&self) -> Result<()>;
    async fn get(store: &dyn Store, scope: &str, id: &str) -> Result<Option<Self>>;
    async fn put(store: &dyn Store, scope: &str, item: Self, pre: Precondition) -> Result<Self>;
    async fn delete(store: &dyn Store, scope: &str, id: &str, pre: Precondition) -> Result<()>;
    async fn query(store: &dyn Store, scope: &str, page: PageRequest) -> Result<Page<Self>>;
}

#[async_trait]
impl EnrollmentKind for IndividualEnrollment {
    const WHAT: &'static str = "Enrollment";
    const ID_NAME: &'static str = "registration ID";
    fn id(&self) -> &str {
        &self.registration_id
    }
    fn spec(&self) -> &EnrollmentSpec {
        &self.spec
    }
    fn spec_mut(&mut self) -> &mut EnrollmentSpec {
        &mut self.spec
    }
    fn check_kind_rules(&self) -> Result<()> {
        if let Some(device_id) = &self.device_id {
            validate_id("device ID", device_id)?;
        }
        Ok(())
    }
    async fn get(store: &dyn Store, scope: &str, id: &str) -> Result<Option<Self>> {
        store.get_enrollment(scope, id).await
    }
    async fn put(store: &dyn Store, scope: &str, item: Self, pre: Precondition) -> Result<Self> {
        store.put_enrollment(scope, item, pre).await
    }
    async fn delete(store: &dyn Store, scope: &str, id: &str, pre: Precondition) -> Result<()> {
        store.delete_enrollment(scope, id, pre).await
    }
    async fn query(store: &dyn Store, scope: &str, page: PageRequest) -> Result<Page<Self>> {
        store.query_enrollments(scope, page).await
    }
}

#[async_trait]
impl EnrollmentKind for EnrollmentGroup {
    const WHAT: &'static str = "Enrollment group";
    const ID_NAME: &'static str = "enrollment group ID";
    fn id(&self) -> &str {
        &self.enrollment_group_id
    }
    fn spec(&self) -> &EnrollmentSpec {
        &self.spec
    }
    fn spec_mut(&mut self) -> &mut EnrollmentSpec {
        &mut self.spec
    }
    fn check_kind_rules(&self) -> Result<()> {
        if self.spec.attestation.kind == AttestationType::Tpm {
            return Err(Error::invalid("TPM attestation is for individual enrollments only"));
        }
        Ok(())
    }
    async fn get(store: &dyn Store, scope: &str, id: &str) -> Result<Option<Self>> {
        store.get_group(scope, id).await
    }
    async fn put(store: &dyn Store, scope: &str, item: Self, pre: Precondition) -> Result<Self> {
        store.put_group(scope, item, pre).await
    }
    async fn delete(store: &dyn Store, scope: &str, id: &str, pre: Precondition) -> Result<()> {
        store.delete_group(scope, id, pre).await
    }
    async fn query(store: &dyn Store, scope: &str, page: PageRequest) -> Result<Page<Self>> {
        store.query_groups(scope, page).await
    }
}

impl Dps {
    /// Create or replace an individual enrollment (`If-Match` makes it conditional).
    pub async fn put_enrollment(
        &self,
        caller: &Caller,
        id: &str,
        enrollment: IndividualEnrollment,
        if_match: Option<&str>,
    ) -> Result<IndividualEnrollment> {
        caller.require(Right::EnrollmentWrite)?;
        self.metered(caller, async {
            self.put_item(&caller.instance, id, enrollment, if_match.map(|t| Precondition::Matches(t.into()))).await
        })
        .await
    }

    /// Read an individual enrollment (keys removed).
    pub async fn get_enrollment(&self, caller: &Caller, id: &str) -> Result<IndividualEnrollment> {
        caller.require(Right::EnrollmentRead)?;
        self.metered(caller, async {
            self.get_item::<IndividualEnrollment>(caller, id).await.map(strip_secrets::<IndividualEnrollment>)
        })
        .await
    }

    /// Delete an individual enrollment (its registration record stays).
    pub async fn delete_enrollment(&self, caller: &Caller, id: &str, if_match: Option<&str>) -> Result<()> {
        caller.require(Right::EnrollmentWrite)?;
        self.metered(caller, async { self.delete_item::<IndividualEnrollment>(caller, id, if_match).await }).await
    }

    /// The enrollment's attestation mechanism, keys included.
    pub async fn enrollment_attestation(&self, caller: &Caller, id: &str) -> Result<AttestationMechanism> {
        caller.require(Right::EnrollmentRead)?;
        self.metered(caller, async { Ok(self.get_item::<IndividualEnrollment>(caller, id).await?.spec.attestation) })
            .await
    }

    /// A page of individual enrollments (keys removed).
    pub async fn query_enrollments(
        &self,
        caller: &Caller,
        query: &str,
        page: PageRequest,
    ) -> Result<Page<IndividualEnrollment>> {
        caller.require(Right::EnrollmentRead)?;
        self.metered(caller, async { self.query_items(caller, query, page).await }).await
    }

    /// Apply a bulk operation to individual enrollments.
    pub async fn bulk_enrollments(
        &self,
        caller: &Caller,
        mode: BulkMode,
        items: Vec<IndividualEnrollment>,
    ) -> Result<BulkOutcome> {
        caller.require(Right::EnrollmentWrite)?;
        self.metered(caller, async { self.bulk(caller, mode, items).await }).await
    }

    /// Create or replace an enrollment group.
    pub async fn put_group(
        &self,
        caller: &Caller,
        id: &str,
        group: EnrollmentGroup,
        if_match: Option<&str>,
    ) -> Result<EnrollmentGroup> {
        caller.require(Right::EnrollmentWrite)?;
        self.metered(caller, async {
            let written =
                self.put_item(&caller.instance, id, group, if_match.map(|t| Precondition::Matches(t.into()))).await;
            self.cache.forget_groups(caller.scope());
            written
        })
        .await
    }

    /// Read an enrollment group (keys removed).
    pub async fn get_group(&self, caller: &Caller, id: &str) -> Result<EnrollmentGroup> {
        caller.require(Right::EnrollmentRead)?;
        self.metered(caller, async {
            self.get_item::<EnrollmentGroup>(caller, id).await.map(strip_secrets::<EnrollmentGroup>)
        })
        .await
    }

    /// Delete an enrollment group (registration records of its devices stay).
    pub async fn delete_group(&self, caller: &Caller, id: &str, if_match: Option<&str>) -> Result<()> {
        caller.require(Right::EnrollmentWrite)?;
        self.metered(caller, async {
            let deleted = self.delete_item::<EnrollmentGroup>(caller, id, if_match).await;
            self.cache.forget_groups(caller.scope());
            deleted
        })
        .await
    }

    /// The group's attestation mechanism, keys included.
    pub async fn group_attestation(&self, caller: &Caller, id: &str) -> Result<AttestationMechanism> {
        caller.require(Right::EnrollmentRead)?;
        self.metered(caller, async { Ok(self.get_item::<EnrollmentGroup>(caller, id).await?.spec.attestation) }).await
    }

    /// A page of enrollment groups (keys removed).
    pub async fn query_groups(&self, caller: &Caller, query: &str, page: PageRequest) -> Result<Page<EnrollmentGroup>> {
        caller.require(Right::EnrollmentRead)?;
        self.metered(caller, async { self.query_items(caller, query, page).await }).await
    }

    /// Apply a bulk operation to enrollment groups.
    pub async fn bulk_groups(
        &self,
        caller: &Caller,
        mode: BulkMode,
        items: Vec<EnrollmentGroup>,
    ) -> Result<BulkOutcome> {
        caller.require(Right::EnrollmentWrite)?;
        self.metered(caller, async {
            let outcome = self.bulk(caller, mode, items).await;
            self.cache.forget_groups(caller.scope());
            outcome
        })
        .await
    }

    /// Read a device's registration record.
    pub async fn get_registration(&self, caller: &Caller, id: &str) -> Result<RegistrationRecord> {
        caller.require(Right::RegistrationStatusRead)?;
        self.metered(caller, async {
            validate_id("registration ID", id)?;
            self.store
                .get_registration(caller.scope(), id)
                .await?
                .ok_or_else(|| Error::not_found(format!("Registration '{id}' not found")))
        })
        .await
    }

    /// Delete a device's registration record (the device may register again as new).
    pub async fn delete_registration(&self, caller: &Caller, id: &str, if_match: Option<&str>) -> Result<()> {
        caller.require(Right::RegistrationStatusWrite)?;
        self.metered(caller, async {
            validate_id("registration ID", id)?;
            self.store.delete_registration(caller.scope(), id, Precondition::if_match(if_match)).await
        })
        .await
    }

    /// A page of the registration records of one group's devices.
    pub async fn query_registrations(
        &self,
        caller: &Caller,
        group_id: &str,
        page: PageRequest,
    ) -> Result<Page<RegistrationRecord>> {
        caller.require(Right::RegistrationStatusRead)?;
        self.metered(caller, async {
            validate_id("enrollment group ID", group_id)?;
            self.store.query_registrations(caller.scope(), group_id, bounded(page)).await
        })
        .await
    }

    async fn get_item<T: EnrollmentKind>(&self, caller: &Caller, id: &str) -> Result<T> {
        validate_id(T::ID_NAME, id)?;
        T::get(self.store.as_ref(), caller.scope(), id)
            .await?
            .ok_or_else(|| Error::not_found(format!("{} '{id}' not found", T::WHAT)))
    }

    async fn delete_item<T: EnrollmentKind>(&self, caller: &Caller, id: &str, if_match: Option<&str>) -> Result<()> {
        validate_id(T::ID_NAME, id)?;
        T::delete(self.store.as_ref(), caller.scope(), id, Precondition::if_match(if_match)).await
    }

    async fn query_items<T: EnrollmentKind>(&self, caller: &Caller, query: &str, page: PageRequest) -> Result<Page<T>> {
        check_query(query)?;
        let page = T::query(self.store.as_ref(), caller.scope(), bounded(page)).await?;
        Ok(Page { items: page.items.into_iter().map(strip_secrets).collect(), continuation: page.continuation })
    }

    /// Validate and write one enrollment. `precondition` None = upsert, which still writes conditionally on
    /// what it read so that keys and creation time are kept consistently under concurrent writers.
    async fn put_item<T: EnrollmentKind>(
        &self,
        instance: &Instance,
        path_id: &str,
        item: T,
        precondition: Option<Precondition>,
    ) -> Result<T> {
        validate_id(T::ID_NAME, path_id)?;
        if !item.id().eq_ignore_ascii_case(path_id) {
            return Err(Error::invalid(format!(
                "The {} in the body ('{}') does not match the path",
                T::ID_NAME,
                printable(item.id())
            )));
        }
        item.check_kind_rules()?;
        self.check_spec(instance, item.spec()).await?;
        let scope = &instance.id_scope;
        let store = self.store.as_ref();
        for _ in 0..3 {
            let existing = T::get(store, scope, path_id).await?;
            if let Some(pre) = &precondition {
                // An If-Match on an absent entity is a failed precondition (412), as HTTP has it.
                pre.check(T::WHAT, existing.as_ref().and_then(|e| e.spec().etag.as_deref())).map_err(|e| match e {
                    Error::NotFound(_) => Error::PreconditionFailed(format!("{}: etag does not match", T::WHAT)),
                    other => other,
                })?;
            }
            // A custom allocation definition is checked (e.g. that its policy exists) only when it changes, so an
            // enrollment naming a since-deleted policy can still be disabled or edited otherwise.
            let old_spec = existing.as_ref().map(|e| e.spec());
            let custom_changed = old_spec.is_none_or(|o| {
                o.allocation_policy != item.spec().allocation_policy
                    || o.custom_allocation_definition != item.spec().custom_allocation_definition
            });
            if custom_changed {
                self.check_custom(instance, item.spec()).await?;
            }
            let mut candidate = item.clone();
            let now = now();
            let spec = candidate.spec_mut();
            spec.created_date_time_utc =
                Some(existing.as_ref().and_then(|e| e.spec().created_date_time_utc).unwrap_or(now));
            spec.last_updated_date_time_utc = Some(now);
            fill_keys(&mut spec.attestation, existing.as_ref().map(|e| &e.spec().attestation));
            let guard = match &existing {
                Some(e) => Precondition::Matches(e.spec().etag.clone().unwrap_or_default()),
                None => Precondition::NotExists,
            };
            match T::put(store, scope, candidate, guard).await {
                Ok(written) => return Ok(written),
                Err(Error::Conflict(_) | Error::PreconditionFailed(_) | Error::NotFound(_))
                    if precondition.is_none() =>
                {
                    continue;
                }
                Err(Error::Conflict(_) | Error::NotFound(_)) | Err(Error::PreconditionFailed(_)) => {
                    return Err(Error::PreconditionFailed(format!("{}: etag does not match", T::WHAT)));
                }
                Err(other) => return Err(other),
            }
        }
        Err(Error::Conflict(format!("{} '{path_id}' is being changed concurrently; retry", T::WHAT)))
    }

    async fn check_spec(&self, instance: &Instance, spec: &EnrollmentSpec) -> Result<()> {
        let attestation = &spec.attestation;
        match attestation.kind {
            AttestationType::SymmetricKey => {
                if let Some(keys) = &attestation.symmetric_key {
                    for key in [&keys.primary_key, &keys.secondary_key].into_iter().flatten() {
                        validate_key(key)?;
                    }
                }
            }
            AttestationType::Tpm => {
                let ek = attestation.tpm.as_ref().map(|t| t.endorsement_key.as_str()).unwrap_or_default();
                if ek.is_empty() {
                    return Err(Error::invalid("TPM attestation requires an endorsementKey"));
                }
            }
            AttestationType::X509 => {
                if attestation.x509.is_none() {
                    return Err(Error::invalid("X.509 attestation requires certificates"));
                }
            }
            AttestationType::None => {
                return Err(Error::invalid("An attestation mechanism is required"));
            }
        }
        let linked = |host: &str| instance.linked_hubs.iter().any(|h| h.host_name.eq_ignore_ascii_case(host));
        for hub in spec.iot_hubs.iter().flatten().chain(spec.iot_hub_host_name.iter()) {
            validate_host_name(hub)?;
            if !linked(hub) {
                return Err(Error::invalid(format!("IoT hub '{hub}' is not linked to this provisioning service")));
            }
        }
        if let Some(twin) = &spec.initial_twin
            && !twin.is_object()
        {
            return Err(Error::invalid("initialTwin must be an object"));
        }
        match spec.allocation_policy {
            Some(AllocationPolicy::Static) => {
                let named = spec.iot_hub_host_name.is_some() || spec.iot_hubs.as_ref().is_some_and(|h| h.len() == 1);
                if !named {
                    return Err(Error::invalid(
                        "The static policy requires iotHubHostName or exactly one iotHubs entry",
                    ));
                }
            }
            Some(AllocationPolicy::Custom)
                if spec.custom_allocation_definition.is_none() && instance.custom_allocation_definition.is_none() =>
            {
                return Err(Error::invalid("The custom policy requires a customAllocationDefinition"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Check the custom allocation definition an enrollment would use (with the allocator: policy exists, ...).
    async fn check_custom(&self, instance: &Instance, spec: &EnrollmentSpec) -> Result<()> {
        if spec.allocation_policy != Some(AllocationPolicy::Custom) {
            return Ok(());
        }
        let definition = spec
            .custom_allocation_definition
            .as_ref()
            .or(instance.custom_allocation_definition.as_ref())
            .ok_or_else(|| Error::invalid("The custom policy requires a customAllocationDefinition"))?;
        self.check_custom_definition(instance, definition).await
    }

    async fn bulk<T: EnrollmentKind>(&self, caller: &Caller, mode: BulkMode, items: Vec<T>) -> Result<BulkOutcome> {
        if items.is_empty() {
            return Err(Error::invalid("A bulk operation needs at least one item"));
        }
        if items.len() > MAX_BULK_ITEMS {
            return Err(Error::invalid(format!("A bulk operation takes at most {MAX_BULK_ITEMS} items")));
        }
        let mut seen = HashSet::new();
        for item in &items {
            if !seen.insert(item.id().to_ascii_lowercase()) {
                return Err(Error::invalid(format!(
                    "'{}' appears more than once in the bulk operation",
                    printable(item.id())
                )));
            }
        }
        let mut outcome = BulkOutcome::default();
        for item in items {
            let id = item.id().to_string();
            let result = match mode {
                BulkMode::Create => {
                    self.put_item(&caller.instance, &id, item, Some(Precondition::NotExists)).await.map(drop)
                }
                BulkMode::Update => self.put_item(&caller.instance, &id, item, None).await.map(drop),
                BulkMode::UpdateIfMatchEtag => match item.spec().etag.clone() {
                    Some(tag) => {
                        self.put_item(&caller.instance, &id, item, Some(Precondition::Matches(tag))).await.map(drop)
                    }
                    None => Err(Error::invalid("updateIfMatchETag needs the item's etag")),
                },
                BulkMode::Delete => {
                    let etag = item.spec().etag.clone();
                    self.delete_item::<T>(caller, &id, etag.as_deref()).await
                }
            };
            if let Err(error) = result {
                outcome.errors.push(BulkItemResult { id, error });
            }
        }
        Ok(outcome)
    }
}

/// Keep existing keys when an update omits them (reads never return keys), generate missing ones on create.
fn fill_keys(new: &mut AttestationMechanism, existing: Option<&AttestationMechanism>) {
    if new.kind != AttestationType::SymmetricKey {
        return;
    }
    let old = existing.filter(|e| e.kind == AttestationType::SymmetricKey).and_then(|e| e.symmetric_key.clone());
    let keys = new.symmetric_key.get_or_insert_with(SymmetricKeyAttestation::default);
    let old = old.unwrap_or_default();
    if keys.primary_key.is_none() {
        keys.primary_key = Some(old.primary_key.unwrap_or_else(generate_key));
    }
    if keys.secondary_key.is_none() {
        keys.secondary_key = Some(old.secondary_key.unwrap_or_else(generate_key));
    }
}

/// An enrollment or group as reads show it: keys removed (only the attestationmechanism call returns them).
fn strip_secrets<T: EnrollmentKind>(mut item: T) -> T {
    let spec = item.spec_mut();
    spec.attestation = spec.attestation.without_secrets();
    item
}

fn bounded(page: PageRequest) -> PageRequest {
    let max_items = match page.max_items {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    };
    PageRequest { max_items, ..page }
}

/// Only the query `*` (all items) is supported, as the SDKs send it.
fn check_query(query: &str) -> Result<()> {
    let q = query.trim();
    let select_all = ["select * from enrollments", "select * from enrollmentgroups", "select * from registrations"];
    if q.is_empty() || q == "*" || select_all.iter().any(|s| q.eq_ignore_ascii_case(s)) {
        Ok(())
    } else {
        Err(Error::invalid(format!("Unsupported query '{}': only \"*\" is supported", printable(q))))
    }
}
