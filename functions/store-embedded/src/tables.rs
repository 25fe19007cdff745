//! The tables, the JSON form entities are kept in, and the transactions every call runs in.

use dps_core::error::{Error, Result};
use dps_core::model::EnrollmentKind;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::EmbeddedStore;
use crate::writer::Engine;

pub(crate) type ScopedTable = TableDefinition<'static, (&'static str, &'static str), &'static [u8]>;

pub(crate) const INSTANCES: TableDefinition<&str, &[u8]> = TableDefinition::new("instances");
pub(crate) const INSTANCE_HOSTS: TableDefinition<&str, &str> = TableDefinition::new("instance_hosts");
pub(crate) const INSTANCE_NAMES: TableDefinition<&str, &str> = TableDefinition::new("instance_names");
pub(crate) const ENROLLMENTS: ScopedTable = TableDefinition::new("enrollments");
pub(crate) const GROUPS: ScopedTable = TableDefinition::new("groups");
pub(crate) const REGISTRATIONS: ScopedTable = TableDefinition::new("registrations");
pub(crate) const REGISTRATIONS_BY_GROUP: TableDefinition<(&str, &str, &str), ()> =
    TableDefinition::new("registrations_by_group");
pub(crate) const OPERATIONS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("operations");

/// The table of one kind of enrollment.
pub(crate) fn enrollment_table(kind: EnrollmentKind) -> ScopedTable {
    match kind {
        EnrollmentKind::Individual => ENROLLMENTS,
        EnrollmentKind::Group => GROUPS,
    }
}

/// Create every table once, so that reads never meet a missing table.
pub(crate) fn create_all(db: &Database) -> Result<()> {
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
    txn.commit().map_err(internal)
}

impl Engine for Database {
    type Txn = WriteTransaction;

    fn begin(&self) -> Result<WriteTransaction> {
        self.begin_write().map_err(internal)
    }

    fn commit(&self, txn: WriteTransaction) -> Result<()> {
        txn.commit().map_err(internal)
    }

    fn abort(&self, txn: WriteTransaction) {
        let _ = txn.abort();
    }
}

pub(crate) fn internal(err: impl std::fmt::Display) -> Error {
    tracing::error!(error = %err, "embedded store failure");
    Error::internal(format!("embedded store: {err}"))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(internal)
}

pub(crate) fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(internal)
}

/// The etag inside a stored entity's JSON (every entity keeps it in an `etag` field).
pub(crate) fn current_etag(stored: &Option<redb::AccessGuard<'_, &'static [u8]>>) -> Result<Option<String>> {
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

/// One entity of a scoped table, parsed with `parse`.
pub(crate) fn get_scoped<T>(
    txn: &ReadTransaction,
    table: ScopedTable,
    scope: &str,
    id: &str,
    parse: impl FnOnce(&[u8]) -> Result<T>,
) -> Result<Option<T>> {
    let table = txn.open_table(table).map_err(internal)?;
    let found = table.get((scope, id)).map_err(internal)?;
    found.map(|v| parse(v.value())).transpose()
}

/// The entity at (scope, id) of a scoped table already open (for reading or inside a write), from its JSON.
pub(crate) fn row<T: DeserializeOwned>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    scope: &str,
    id: &str,
) -> Result<Option<T>> {
    let found = table.get((scope, id)).map_err(internal)?;
    found.map(|v| from_json(v.value())).transpose()
}

impl EmbeddedStore {
    /// Run `f` in the writer thread's next shared transaction (group commit, see `writer.rs`); resolves once that
    /// transaction is durably committed. `f` must check before it writes: an `Err` from it must leave the
    /// transaction as it found it, since other callers' writes share it.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T> + Send + 'static,
    {
        self.writer.write(move |txn: &mut WriteTransaction| f(txn)).await
    }

    /// Run `f` on a read snapshot right here, on the caller's thread: for point reads (one or two keys), which redb
    /// serves from its page cache in microseconds, less than the hand-off to the blocking pool and back costs (on
    /// a cache miss the caller's worker waits for one page read from the file).
    pub(crate) fn read_now<T>(&self, f: impl FnOnce(&ReadTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_read().map_err(internal)?;
        f(&txn)
    }

    /// Run `f` on a read snapshot on the blocking pool: for scans (pages, lists), whose cost grows with the data.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T>
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
}
