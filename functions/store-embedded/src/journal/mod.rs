//! The journal store: the same tables on fjall, a log-structured engine whose write-ahead journal takes each group
//! commit as one append and one `fdatasync` (where redb copies and writes the B-tree pages a commit touched).
//! Directory layout is fjall's (a `journals/` and a `keyspaces/` folder) inside the store's own folder.

mod engine;
mod rows;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use dps_core::error::Result;
use dps_core::model::{
    AnyEnrollment, EnrollmentKind, Instance, OperationCount, OperationKind, RegistrationRecord, TpmChallenge,
};
use dps_core::store::{DeviceContext, Page, PageRequest, Precondition, Store, Write, key};
use fjall::Snapshot;

use self::engine::{Journal, Tables, Txn};
use crate::tables::internal;
use crate::writer::{CommitStats, Writer};

/// Name of the journal store's folder inside the data directory.
pub const DIR_NAME: &str = "dps.journal";

/// A [`Store`] on fjall in one folder.
#[derive(Clone)]
pub struct JournalStore {
    journal: Arc<Journal>,
    writer: Arc<Writer<Journal>>,
}

impl JournalStore {
    /// Open (or create) the store in `DIR_NAME` inside the data directory `dir`, creating both if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().join(DIR_NAME);
        std::fs::create_dir_all(&dir).map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        let journal = Arc::new(Journal::open(&dir, false)?);
        Ok(Self { writer: Arc::new(Writer::start(journal.clone())?), journal })
    }

    /// Durable commits so far and the writes they carried.
    pub fn commit_stats(&self) -> CommitStats {
        self.writer.stats()
    }

    /// Run `f` in the next group commit; resolves once it is durable.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tables, &mut Txn) -> Result<T> + Send + 'static,
    {
        let journal = self.journal.clone();
        self.writer.write(move |txn| f(&journal.tables, txn)).await
    }

    /// [`JournalStore::write`] under `write`: its meter (if any) is counted in the same commit iff `f` writes.
    async fn write_counted<T, F>(&self, scope: &str, write: Write, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tables, &mut Txn, &str, Precondition) -> Result<T> + Send + 'static,
    {
        let scope = key(scope);
        self.write(move |t, txn| {
            let written = f(t, txn, &scope, write.precondition)?;
            rows::count(t, txn, &scope, write.meter.as_ref())?;
            Ok(written)
        })
        .await
    }

    /// Run `f` on a snapshot here (point reads: served from the memtables and block cache).
    fn read_now<T>(&self, f: impl FnOnce(&Tables, &Snapshot) -> Result<T>) -> Result<T> {
        f(&self.journal.tables, &self.journal.db.snapshot())
    }

    /// Run `f` on a snapshot on the blocking pool (scans).
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Tables, &Snapshot) -> Result<T> + Send + 'static,
    {
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || f(&journal.tables, &journal.db.snapshot())).await.map_err(internal)?
    }
}

#[async_trait]
impl Store for JournalStore {
    async fn create_instance(&self, instance: Instance) -> Result<Instance> {
        self.write(move |t, txn| rows::create_instance(t, txn, instance)).await
    }

    async fn update_instance(&self, instance: Instance, precondition: Precondition) -> Result<Instance> {
        self.write(move |t, txn| rows::update_instance(t, txn, instance, precondition)).await
    }

    async fn instance_by_scope(&self, id_scope: &str) -> Result<Option<Instance>> {
        self.read_now(|t, snap| rows::instance_by_scope(t, snap, &key(id_scope)))
    }

    async fn instance_by_host(&self, host_name: &str) -> Result<Option<Instance>> {
        self.read_now(|t, snap| rows::instance_by_host(t, snap, &key(host_name)))
    }

    async fn list_instances(&self) -> Result<Vec<Instance>> {
        self.read(rows::all_instances).await
    }

    async fn get_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str) -> Result<Option<AnyEnrollment>> {
        self.read_now(|t, snap| rows::get_enrollment(t, snap, kind, &key(scope), &key(id)))
    }

    async fn put_enrollment(&self, scope: &str, enrollment: AnyEnrollment, write: Write) -> Result<AnyEnrollment> {
        self.write_counted(scope, write, move |t, txn, scope, pre| rows::put_enrollment(t, txn, scope, enrollment, pre))
            .await
    }

    async fn delete_enrollment(&self, scope: &str, kind: EnrollmentKind, id: &str, write: Write) -> Result<()> {
        let id = key(id);
        self.write_counted(scope, write, move |t, txn, scope, pre| rows::delete_enrollment(t, txn, scope, kind, &id, pre))
            .await
    }

    async fn query_enrollments(
        &self,
        scope: &str,
        kind: EnrollmentKind,
        page: PageRequest,
    ) -> Result<Page<AnyEnrollment>> {
        let scope = key(scope);
        self.read(move |t, snap| rows::enrollment_page(t, snap, &scope, kind, page)).await
    }

    async fn device_context(&self, scope: &str, registration_id: &str) -> Result<DeviceContext> {
        self.read_now(|t, snap| rows::device_context(t, snap, &key(scope), &key(registration_id)))
    }

    async fn get_registration(&self, scope: &str, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        self.read_now(|t, snap| rows::get_registration(t, snap, &key(scope), &key(registration_id)))
    }

    async fn put_registration(
        &self,
        scope: &str,
        record: RegistrationRecord,
        write: Write,
    ) -> Result<RegistrationRecord> {
        self.write_counted(scope, write, move |t, txn, scope, pre| rows::put_registration(t, txn, scope, record, pre))
            .await
    }

    async fn delete_registration(&self, scope: &str, registration_id: &str, write: Write) -> Result<()> {
        let id = key(registration_id);
        self.write_counted(scope, write, move |t, txn, scope, pre| rows::delete_registration(t, txn, scope, &id, pre))
            .await
    }

    async fn query_registrations(
        &self,
        scope: &str,
        group_id: &str,
        page: PageRequest,
    ) -> Result<Page<RegistrationRecord>> {
        let (scope, group) = (key(scope), key(group_id));
        self.read(move |t, snap| rows::registration_page(t, snap, &scope, &group, page)).await
    }

    async fn add_operations(&self, scope: &str, date: &str, kind: OperationKind, count: u64) -> Result<()> {
        let (scope, date) = (key(scope), date.to_string());
        self.write(move |t, txn| rows::add_count(t, txn, &scope, &date, kind, count)).await
    }

    async fn operations(&self, scope: &str, from: &str, to: &str) -> Result<Vec<OperationCount>> {
        let (scope, from, to) = (key(scope), from.to_string(), to.to_string());
        self.read(move |t, snap| rows::operations(t, snap, &scope, &from, &to)).await
    }

    async fn get_tpm_challenge(&self, scope: &str, registration_id: &str) -> Result<Option<TpmChallenge>> {
        self.read_now(|t, snap| rows::get_tpm_challenge(t, snap, &key(scope), &key(registration_id)))
    }

    async fn put_tpm_challenge(
        &self,
        scope: &str,
        challenge: TpmChallenge,
        precondition: Precondition,
    ) -> Result<TpmChallenge> {
        let scope = key(scope);
        self.write(move |t, txn| rows::put_tpm_challenge(t, txn, &scope, challenge, precondition)).await
    }
}
