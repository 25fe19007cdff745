//! Embedded storage adapter for the single-machine server: one [redb] database file, `dps.redb`, in the data
//! directory. It passes the storage conformance suite of `dps-core` (see `tests/conformance.rs`).
//!
//! Every call runs on tokio's blocking pool. Every write is one redb write transaction that reads the current
//! version, checks the [`Precondition`], writes the entity together with its indexes (and, for a registration,
//! its operation counter) and commits; redb runs one write transaction at a time and commits atomically and
//! durably, so concurrent writers cannot both win and a crash leaves no half-written state.
//!
//! # Table layout
//!
//! Scopes and IDs in keys are [`dps_core::store::key`] forms (lower case); entities are stored as their JSON
//! (the Azure wire form), with their original case and etag inside.
//!
//! | table                    | key                                   | value                        |
//! |--------------------------|---------------------------------------|------------------------------|
//! | `instances`              | scope                                 | instance JSON                |
//! | `instance_hosts`         | service host name                     | scope                        |
//! | `instance_names`         | instance name (as given)              | scope                        |
//! | `enrollments`            | (scope, registration ID)              | individual enrollment JSON   |
//! | `groups`                 | (scope, group ID)                     | enrollment group JSON        |
//! | `registrations`          | (scope, registration ID)              | registration record JSON     |
//! | `registrations_by_group` | (scope, group ID, registration ID)    | `()` (index, kept in step)   |
//! | `operations`             | (scope, `YYYY-MM-DD`, kind name)      | count (`u64`)                |
//!
//! Tuple keys order element by element, so one scope's items are a contiguous range in ascending ID order.
//! A page continuation is the key of the last ID returned.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use dps_core::error::{Error, Result};
use dps_core::model::{
    EnrollmentGroup, IndividualEnrollment, Instance, OperationCount, OperationKind, RegistrationRecord,
};
use dps_core::store::{DeviceContext, Page, PageRequest, Precondition, Store, key, new_etag};
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Name of the database file inside the data directory.
pub const FILE_NAME: &str = "dps.redb";

type ScopedTable = TableDefinition<'static, (&'static str, &'static str), &'static [u8]>;

const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
const INSTANCE_HOSTS: TableDefinition<&str, &str> = TableDefinition::new("instance_hosts");
const INSTANCE_NAMES: TableDefinition<&str, &str> = TableDefinition::new("instance_names");
const ENROLLMENTS: ScopedTable = TableDefinition::new("enrollments");
const GROUPS: ScopedTable = TableDefinition::new("groups");
const REGISTRATIONS: ScopedTable = TableDefinition::new("registrations");
const REGISTRATIONS_BY_GROUP: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("registrations_by_group");
const OPERATIONS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("operations");

/// A [`Store`] in one redb database file.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
}

fn internal(err: impl std::fmt::Display) -> Error {
    tracing::error!(error = %err, "embedded store failure");
    Error::internal(format!("embedded store: {err}"))
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(internal)
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(internal)
}

impl EmbeddedStore {
    /// Open (or create) the store in the data directory `dir`, creating the directory if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        Self::init(Database::create(dir.join(FILE_NAME)).map_err(internal)?)
    }

    /// A store on redb's in-memory backend: the same transactions without a file (benchmarks, tests).
    pub fn in_memory() -> Result<Self> {
        let backend = redb::backends::InMemoryBackend::new();
        Self::init(Database::builder().create_with_backend(backend).map_err(internal)?)
    }

    fn init(db: Database) -> Result<Self> {
        // Create every table once, so that reads never meet a missing table.
        let txn = db.begin_write().map_err(internal)?;
        {
            txn.open_table(INSTANCES).map_err(internal)?;
            txn.open_table(INSTANCE_HOSTS).map_err(internal)?;
            txn.open_table(INSTANCE_NAMES).map_err(internal)?;
            txn.open_table(ENROLLMENTS).map_err(internal)?;
            txn.open_table(GROUPS).map_err(internal)?;
            txn.open_table(REGISTRATIONS).map_err(internal)?;
            txn.open_table(REGISTRATIONS_BY_GROUP).map_err(internal)?;
            txn.open_table(OPERATIONS).map_err(internal)?;
        }
        txn.commit().map_err(internal)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Run `f` in one write transaction on the blocking pool; commit if it succeeds, abort if not.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_write().map_err(internal)?;
            match f(&txn) {
                Ok(out) => {
                    txn.commit().map_err(internal)?;
                    Ok(out)
                }
                Err(err) => {
                    txn.abort().map_err(internal)?;
                    Err(err)
                }
            }
        })
        .await
        .map_err(internal)?
    }

    /// Run `f` on a read snapshot on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(internal)?;
            f(&txn)
        })
        .await
        .map_err(internal)?
    }

    async fn get_scoped<T>(&self, table: ScopedTable, scope: &str, id: &str) -> Result<Option<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let (scope, id) = (key(scope), key(id));
        self.read(move |txn| get_scoped(txn, table, &scope, &id)).await
    }

    async fn query_scoped<T>(&self, table: ScopedTable, scope: &str, page: PageRequest) -> Result<Page<T>>
    where
        T: DeserializeOwned + Send + 'static,
    {
        let scope = key(scope);
        self.read(move |txn| {
            let table = txn.open_table(table).map_err(internal)?;
            let start = match &page.continuation {
                Some(after) => Bound::Excluded((scope.as_str(), after.as_str())),
                None => Bound::Included((scope.as_str(), "")),
            };
            let max = page.max_items.max(1);
            let mut items = Vec::new();
            let mut last = None;
            for entry in table.range::<(&str, &str)>((start, Bound::Unbounded)).map_err(internal)? {
                let (k, v) = entry.map_err(internal)?;
                let (entry_scope, id) = k.value();
                if entry_scope != scope {
                    break;
                }
                if items.len() == max {
                    return Ok(Page { items, continuation: last });
                }
                items.push(from_json(v.value())?);
                last = Some(id.to_string());
            }
            Ok(Page { items, continuation: None })
        })
        .await
    }

    /// Conditionally write an enrollment or group: read, check, write with a fresh etag, in one transaction.
    async fn put_scoped<T: Enrollment>(&self, scope: &str, item: T, precondition: Precondition) -> Result<T> {
        let (scope, id) = (key(scope), key(item.id()));
        self.write(move |txn| {
            let mut table = txn.open_table(T::TABLE).map_err(internal)?;
            let current = current_etag(&table.get((scope.as_str(), id.as_str())).map_err(internal)?)?;
            precondition.check(T::WHAT, current.as_deref())?;
            let mut item = item;
            item.set_etag(new_etag());
            table.insert((scope.as_str(), id.as_str()), to_json(&item)?.as_slice()).map_err(internal)?;
            Ok(item)
        })
        .await
    }

    async fn delete_scoped(
        &self,
        table: ScopedTable,
        what: &'static str,
        scope: &str,
        id: &str,
        precondition: Precondition,
    ) -> Result<()> {
        let (scope, id) = (key(scope), key(id));
        self.write(move |txn| {
            let mut table = txn.open_table(table).map_err(internal)?;
            let current = current_etag(&table.get((scope.as_str(), id.as_str())).map_err(internal)?)?
                .ok_or_else(|| Error::not_found(format!("{what} not found")))?;
            precondition.check(what, Some(&current))?;
            table.remove((scope.as_str(), id.as_str())).map_err(internal)?;
            Ok(())
        })
        .await
    }
}

/// Individual enrollments and groups: stored alike, in their own tables.
trait Enrollment: Serialize + Send + 'static {
    const TABLE: ScopedTable;
    const WHAT: &'static str;
    fn id(&self) -> &str;
    fn set_etag(&mut self, etag: String);
}

impl Enrollment for IndividualEnrollment {
    const TABLE: ScopedTable = ENROLLMENTS;
    const WHAT: &'static str = "Enrollment";
    fn id(&self) -> &str {
        &self.registration_id
    }
    fn set_etag(&mut self, etag: String) {
        self.spec.etag = Some(etag);
    }
}

impl Enrollment for EnrollmentGroup {
    const TABLE: ScopedTable = GROUPS;
    const WHAT: &'static str = "Enrollment group";
    fn id(&self) -> &str {
        &self.enrollment_group_id
    }
    fn set_etag(&mut self, etag: String) {
        self.spec.etag = Some(etag);
    }
}

fn get_scoped<T: DeserializeOwned>(
    txn: &ReadTransaction,
    table: ScopedTable,
    scope: &str,
    id: &str,
) -> Result<Option<T>> {
    let table = txn.open_table(table).map_err(internal)?;
    let found = table.get((scope, id)).map_err(internal)?;
    found.map(|v| from_json(v.value())).transpose()
}

/// The etag inside a stored entity's JSON (every entity keeps it in an `etag` field).
fn current_etag(stored: &Option<redb::AccessGuard<'_, &'static [u8]>>) -> Result<Option<String>> {
    #[derive(serde::Deserialize)]
    struct Tagged {
        #[serde(default)]
        etag: Option<String>,
    }
    match stored {
        None => Ok(None),
        Some(v) => Ok(Some(from_json::<Tagged>(v.value())?.etag.unwrap_or_default())),
    }
}

fn kind_from_str(name: &str) -> Option<OperationKind> {
    OperationKind::ALL.into_iter().find(|k| k.as_str() == name)
}

fn add_count(txn: &WriteTransaction, scope: &str, date: &str, kind: OperationKind, count: u64) -> Result<()> {
    let mut table = txn.open_table(OPERATIONS).map_err(internal)?;
    let at = (scope, date, kind.as_str());
    let current = table.get(at).map_err(internal)?.map(|v| v.value()).unwrap_or(0);
    table.insert(at, current.saturating_add(count)).map_err(internal)?;
    Ok(())
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn create_instance(&self, mut instance: Instance) -> Result<Instance> {
        self.write(move |txn| {
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
        })
        .await
    }

    async fn update_instance(&self, mut instance: Instance, precondition: Precondition) -> Result<Instance> {
        self.write(move |txn| {
            let scope = key(&instance.id_scope);
            let mut instances = txn.open_table(INSTANCES).map_err(internal)?;
            let current = current_etag(&instances.get(scope.as_str()).map_err(internal)?)?;
            precondition.check("Instance", current.as_deref())?;
            instance.etag = Some(new_etag());
            instances.insert(scope.as_str(), to_json(&instance)?.as_slice()).map_err(internal)?;
            Ok(instance)
        })
        .await
    }

    async fn instance_by_scope(&self, id_scope: &str) -> Result<Option<Instance>> {
        let scope = key(id_scope);
        self.read(move |txn| {
            let instances = txn.open_table(INSTANCES).map_err(internal)?;
            let found = instances.get(scope.as_str()).map_err(internal)?;
            found.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn instance_by_host(&self, host_name: &str) -> Result<Option<Instance>> {
        let host = key(host_name);
        self.read(move |txn| {
            let hosts = txn.open_table(INSTANCE_HOSTS).map_err(internal)?;
            let Some(scope) = hosts.get(host.as_str()).map_err(internal)?.map(|v| v.value().to_string()) else {
                return Ok(None);
            };
            let instances = txn.open_table(INSTANCES).map_err(internal)?;
            let found = instances.get(scope.as_str()).map_err(internal)?;
            found.map(|v| from_json(v.value())).transpose()
        })
        .await
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        self.read(|txn| {
            let instances = txn.open_table(INSTANCES).map_err(internal)?;
            let mut out = Vec::new();
            for entry in instances.iter().map_err(internal)? {
                out.push(from_json(entry.map_err(internal)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn get_enrollment(&self, scope: &str, registration_id: &str) -> Result<Option<IndividualEnrollment>> {
        self.get_scoped(ENROLLMENTS, scope, registration_id).await
    }

    async fn put_enrollment(
        &self,
        scope: &str,
        enrollment: IndividualEnrollment,
        precondition: Precondition,
    ) -> Result<IndividualEnrollment> {
        self.put_scoped(scope, enrollment, precondition).await
    }

    async fn delete_enrollment(&self, scope: &str, registration_id: &str, precondition: Precondition) -> Result<()> {
        self.delete_scoped(ENROLLMENTS, "Enrollment", scope, registration_id, precondition).await
    }

    async fn query_enrollments(&self, scope: &str, page: PageRequest) -> Result<Page<IndividualEnrollment>> {
        self.query_scoped(ENROLLMENTS, scope, page).await
    }

    async fn get_group(&self, scope: &str, group_id: &str) -> Result<Option<EnrollmentGroup>> {
        self.get_scoped(GROUPS, scope, group_id).await
    }

    async fn put_group(
        &self,
        scope: &str,
        group: EnrollmentGroup,
        precondition: Precondition,
    ) -> Result<EnrollmentGroup> {
        self.put_scoped(scope, group, precondition).await
    }

    async fn delete_group(&self, scope: &str, group_id: &str, precondition: Precondition) -> Result<()> {
        self.delete_scoped(GROUPS, "Enrollment group", scope, group_id, precondition).await
    }

    async fn query_groups(&self, scope: &str, page: PageRequest) -> Result<Page<EnrollmentGroup>> {
        self.query_scoped(GROUPS, scope, page).await
    }

    async fn device_context(&self, scope: &str, registration_id: &str) -> Result<DeviceContext> {
        let (scope, id) = (key(scope), key(registration_id));
        self.read(move |txn| {
            Ok(DeviceContext {
                enrollment: get_scoped(txn, ENROLLMENTS, &scope, &id)?,
                record: get_scoped(txn, REGISTRATIONS, &scope, &id)?,
            })
        })
        .await
    }

    async fn get_registration(&self, scope: &str, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        self.get_scoped(REGISTRATIONS, scope, registration_id).await
    }

    async fn put_registration(
        &self,
        scope: &str,
        mut record: RegistrationRecord,
        precondition: Precondition,
        meter: Option<OperationCount>,
    ) -> Result<RegistrationRecord> {
        let (scope, id) = (key(scope), key(&record.registration_id));
        self.write(move |txn| {
            let mut records = txn.open_table(REGISTRATIONS).map_err(internal)?;
            let old: Option<RegistrationRecord> = records
                .get((scope.as_str(), id.as_str()))
                .map_err(internal)?
                .map(|v| from_json(v.value()))
                .transpose()?;
            precondition.check("Registration", old.as_ref().map(|r| r.etag.as_deref().unwrap_or_default()))?;
            record.etag = Some(new_etag());
            records.insert((scope.as_str(), id.as_str()), to_json(&record)?.as_slice()).map_err(internal)?;

            let mut by_group = txn.open_table(REGISTRATIONS_BY_GROUP).map_err(internal)?;
            if let Some(old_group) = old.and_then(|r| r.enrollment_group_id) {
                by_group.remove((scope.as_str(), key(&old_group).as_str(), id.as_str())).map_err(internal)?;
            }
            if let Some(group) = &record.enrollment_group_id {
                by_group.insert((scope.as_str(), key(group).as_str(), id.as_str()), ()).map_err(internal)?;
            }
            if let Some(m) = meter {
                add_count(txn, &scope, &m.date, m.kind, m.count)?;
            }
            Ok(record)
        })
        .await
    }

    async fn delete_registration(&self, scope: &str, registration_id: &str, precondition: Precondition) -> Result<()> {
        let (scope, id) = (key(scope), key(registration_id));
        self.write(move |txn| {
            let mut records = txn.open_table(REGISTRATIONS).map_err(internal)?;
            let old: RegistrationRecord = records
                .get((scope.as_str(), id.as_str()))
                .map_err(internal)?
                .map(|v| from_json(v.value()))
                .transpose()?
                .ok_or_else(|| Error::not_found("Registration not found"))?;
            precondition.check("Registration", Some(old.etag.as_deref().unwrap_or_default()))?;
            records.remove((scope.as_str(), id.as_str())).map_err(internal)?;
            if let Some(group) = &old.enrollment_group_id {
                let mut by_group = txn.open_table(REGISTRATIONS_BY_GROUP).map_err(internal)?;
                by_group.remove((scope.as_str(), key(group).as_str(), id.as_str())).map_err(internal)?;
            }
            Ok(())
        })
        .await
    }

    async fn query_registrations(
        &self,
        scope: &str,
        group_id: &str,
        page: PageRequest,
    ) -> Result<Page<RegistrationRecord>> {
        let (scope, group) = (key(scope), key(group_id));
        self.read(move |txn| {
            let index = txn.open_table(REGISTRATIONS_BY_GROUP).map_err(internal)?;
            let records = txn.open_table(REGISTRATIONS).map_err(internal)?;
            let start = match &page.continuation {
                Some(after) => Bound::Excluded((scope.as_str(), group.as_str(), after.as_str())),
                None => Bound::Included((scope.as_str(), group.as_str(), "")),
            };
            let max = page.max_items.max(1);
            let mut items = Vec::new();
            let mut last = None;
            for entry in index.range::<(&str, &str, &str)>((start, Bound::Unbounded)).map_err(internal)? {
                let (k, _) = entry.map_err(internal)?;
                let (entry_scope, entry_group, id) = k.value();
                if entry_scope != scope || entry_group != group {
                    break;
                }
                if items.len() == max {
                    return Ok(Page { items, continuation: last });
                }
                let record = records.get((scope.as_str(), id)).map_err(internal)?;
                let record = record.ok_or_else(|| internal(format!("index names a missing record '{id}'")))?;
                items.push(from_json(record.value())?);
                last = Some(id.to_string());
            }
            Ok(Page { items, continuation: None })
        })
        .await
    }

    async fn add_operations(&self, scope: &str, date: &str, kind: OperationKind, count: u64) -> Result<()> {
        let (scope, date) = (key(scope), date.to_string());
        self.write(move |txn| add_count(txn, &scope, &date, kind, count)).await
    }

    async fn operations(&self, scope: &str, from: &str, to: &str) -> Result<Vec<OperationCount>> {
        let (scope, from, to) = (key(scope), from.to_string(), to.to_string());
        self.read(move |txn| {
            let table = txn.open_table(OPERATIONS).map_err(internal)?;
            let mut out = Vec::new();
            let range = table.range::<(&str, &str, &str)>((scope.as_str(), from.as_str(), "")..).map_err(internal)?;
            for entry in range {
                let (k, v) = entry.map_err(internal)?;
                let (entry_scope, date, kind) = k.value();
                if entry_scope != scope || date > to.as_str() {
                    break;
                }
                if let Some(kind) = kind_from_str(kind) {
                    out.push(OperationCount { date: date.to_string(), kind, count: v.value() });
                }
            }
            out.sort_by(|a, b| (&a.date, a.kind).cmp(&(&b.date, b.kind)));
            Ok(out)
        })
        .await
    }
}
