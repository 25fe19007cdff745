//! Embedded storage adapter for the single-machine server: one [fjall] database (a log-structured engine: a
//! write-ahead journal and an LSM tree per table) in the folder `store/` of the data directory. It passes the
//! storage conformance suite of `dps-core` (see `tests/conformance.rs`).
//!
//! Reads run on snapshots: point reads on the caller's thread, scans on tokio's blocking pool. Writes go to one
//! writer thread that commits them in groups (`writer.rs`): the writes that arrive while a commit is in flight share
//! the next write batch, where each, in order, reads the current version (the batch's own earlier writes
//! included), checks its [`Precondition`] and writes the entity together with its indexes (and, for a
//! registration, its operation counter). The batch is appended to the journal and `fdatasync`ed once, and only
//! then applied and made visible; each caller is answered after that. The one writer's in-order checks
//! mean concurrent writers cannot both win; a batch is atomic in the journal, so a crash leaves no half-written
//! state; a write is acknowledged only once it is on disk.
//!
//! The engine was chosen by measurement over redb, which the store used before (`docs/PERFORMANCE.md`, "The
//! embedded engine"): a redb commit copies and writes the B-tree pages it touched, a fjall commit appends the
//! batch. A data directory written by the redb store (`dps.redb`) is migrated on first open (`migrate.rs`).
//!
//! # Table layout
//!
//! Scopes and IDs in keys are [`dps_core::store::key`] forms (lower case), joined by a zero byte; entities are
//! stored as their JSON (the Azure wire form), with their original case and etag inside.
//!
//! | table                    | key                                   | value                        |
//! |--------------------------|---------------------------------------|------------------------------|
//! | `instances`              | scope                                 | instance JSON                |
//! | `instance_hosts`         | service host name                     | scope                        |
//! | `instance_names`         | instance name (as given)              | scope                        |
//! | `enrollments`            | scope, registration ID                | individual enrollment JSON   |
//! | `groups`                 | scope, group ID                       | enrollment group JSON        |
//! | `registrations`          | scope, registration ID                | registration record JSON     |
//! | `registrations_by_group` | scope, group ID, registration ID      | empty (index, kept in step)  |
//! | `operations`             | scope, `YYYY-MM-DD`, kind name        | count (`u64`, little-endian) |
//! | `tpm_challenges`         | scope, registration ID                | TPM challenge JSON (expiring) |
//!
//! Keys order part by part, so one scope's items are a contiguous range in ascending ID order.
//! A page continuation is the last ID returned.

mod engine;
mod migrate;
mod rows;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use dps_core::error::Result;
use dps_core::model::{
    AnyEnrollment, EnrollmentKind, Instance, OperationCount, OperationKind, RegistrationRecord, TpmChallenge,
};
use dps_core::store::{DeviceContext, Page, PageRequest, Precondition, Store, Write, key};
use fjall::Snapshot;

use crate::engine::{Journal, Tables, Txn, internal};
pub use crate::writer::CommitStats;
use crate::writer::Writer;

/// Name of the store's folder inside the data directory.
pub const DIR_NAME: &str = "store";

/// A [`Store`] in one fjall database.
#[derive(Clone)]
pub struct EmbeddedStore {
    journal: Arc<Journal>,
    writer: Arc<Writer<Journal>>,
}

impl EmbeddedStore {
    /// Open (or create) the store in [`DIR_NAME`] inside the data directory `dir`, creating both if needed; a
    /// redb store found there (`dps.redb`) is migrated first. The folder admits one process at a time.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| internal(format!("cannot create {}: {e}", dir.display())))?;
        migrate::from_redb(dir)?;
        Self::start(Journal::open(&dir.join(DIR_NAME), false)?)
    }

    /// A store in a fresh temporary folder, removed when the store is dropped (benchmarks, tests).
    pub fn temporary() -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("dps-store-{}", uuid::Uuid::new_v4().simple()));
        Self::start(Journal::open(&dir, true)?)
    }

    fn start(journal: Journal) -> Result<Self> {
        let journal = Arc::new(journal);
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

    /// [`EmbeddedStore::write`] under `write`: its meter (if any) is counted in the same commit iff `f` writes.
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

    /// Run `f` on a snapshot here (point reads: served from the memtables, the block cache or the table files).
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
impl Store for EmbeddedStore {
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
        self.write_counted(scope, write, move |t, txn, scope, pre| {
            rows::delete_enrollment(t, txn, scope, kind, &id, pre)
        })
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
