//! Moving a data directory from the redb store (`dps.redb`, one file, used up to this engine change) to the fjall
//! store, once, on the first open.
//!
//! The rows are copied table by table into a new database in `store.migrating/`, made durable, and only then is the
//! folder renamed to `store/` (one atomic rename) and the old file to `dps.redb.migrated` (kept as a backup, never
//! read again). A crash before the rename leaves the old file the only store (the half-built folder is removed on
//! the next open and the copy starts over); a crash after it leaves `store/` complete, and the next open only
//! renames the old file. Keys keep their parts and values their bytes: the layouts are the same table for table.

use std::path::Path;

use dps_core::error::Result;
use fjall::{Database, KeyspaceCreateOptions, PersistMode};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableError, TableHandle};

use crate::DIR_NAME;
use crate::engine::{internal, key};

/// The redb store's file in the data directory.
pub const REDB_FILE: &str = "dps.redb";
/// What the redb store's file is renamed to once its rows are in the fjall store.
pub const REDB_MIGRATED: &str = "dps.redb.migrated";
const MIGRATING: &str = "store.migrating";
/// Rows per write batch while copying.
const CHUNK: usize = 10_000;


/// Migrate the redb store in `data_dir`, if there is one.
pub(crate) fn from_redb(data_dir: &Path) -> Result<()> {
    let old = data_dir.join(REDB_FILE);
    if !old.is_file() {
        return Ok(());
    }
    let (target, staging) = (data_dir.join(DIR_NAME), data_dir.join(MIGRATING));
    if !target.exists() {
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(internal)?;
        }
        let rows = copy(&old, &staging)?;
        std::fs::rename(&staging, &target).map_err(internal)?;
        tracing::info!(rows, from = %old.display(), to = %target.display(), "migrated the redb store");
    }
    std::fs::rename(&old, data_dir.join(REDB_MIGRATED)).map_err(internal)?;
    sync_dir(data_dir)
}

/// Copy every row of the redb file `from` into a new fjall database in `to`; the number of rows copied.
fn copy(from: &Path, to: &Path) -> Result<usize> {
    let redb = redb::Database::open(from).map_err(internal)?;
    let read = redb.begin_read().map_err(internal)?;
    let db = Database::builder(to).open().map_err(internal)?;
    let mut copier = Copier { db: &db, batch: db.batch(), rows: 0 };

    if let Some(table) = optional(read.open_table(TableDefinition::<&str, &[u8]>::new("instances")))? {
        let ks = db.keyspace(table.name(), KeyspaceCreateOptions::default).map_err(internal)?;
        for row in table.iter().map_err(internal)? {
            let (k, v) = row.map_err(internal)?;
            copier.put(&ks, key(&[k.value()]), v.value().to_vec())?;
        }
    }
    for name in ["instance_hosts", "instance_names"] {
        let Some(table) = optional(read.open_table(TableDefinition::<&str, &str>::new(name)))? else { continue };
        let ks = db.keyspace(name, KeyspaceCreateOptions::default).map_err(internal)?;
        for row in table.iter().map_err(internal)? {
            let (k, v) = row.map_err(internal)?;
            copier.put(&ks, key(&[k.value()]), v.value().as_bytes().to_vec())?;
        }
    }
    for name in ["enrollments", "groups", "registrations", "tpm_challenges"] {
        let table = TableDefinition::<(&str, &str), &[u8]>::new(name);
        let Some(table) = optional(read.open_table(table))? else { continue };
        let ks = db.keyspace(name, KeyspaceCreateOptions::default).map_err(internal)?;
        for row in table.iter().map_err(internal)? {
            let (k, v) = row.map_err(internal)?;
            let (a, b) = k.value();
            copier.put(&ks, key(&[a, b]), v.value().to_vec())?;
        }
    }
    let index = TableDefinition::<(&str, &str, &str), ()>::new("registrations_by_group");
    if let Some(table) = optional(read.open_table(index))? {
        let ks = db.keyspace(table.name(), KeyspaceCreateOptions::default).map_err(internal)?;
        for row in table.iter().map_err(internal)? {
            let (k, _) = row.map_err(internal)?;
            let (a, b, c) = k.value();
            copier.put(&ks, key(&[a, b, c]), Vec::new())?;
        }
    }
    if let Some(table) = optional(read.open_table(TableDefinition::<(&str, &str, &str), u64>::new("operations")))? {
        let ks = db.keyspace(table.name(), KeyspaceCreateOptions::default).map_err(internal)?;
        for row in table.iter().map_err(internal)? {
            let (k, v) = row.map_err(internal)?;
            let (a, b, c) = k.value();
            copier.put(&ks, key(&[a, b, c]), v.value().to_le_bytes().to_vec())?;
        }
    }
    copier.flush()?;
    db.persist(PersistMode::SyncAll).map_err(internal)?;
    Ok(copier.rows)
}

fn optional<T>(opened: std::result::Result<T, TableError>) -> Result<Option<T>> {
    match opened {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(internal(e)),
    }
}

/// Writes the copied rows in batches of [`CHUNK`].
struct Copier<'a> {
    db: &'a Database,
    batch: fjall::OwnedWriteBatch,
    rows: usize,
}

impl Copier<'_> {
    fn put(&mut self, ks: &fjall::Keyspace, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.batch.insert(ks, key, value);
        self.rows += 1;
        if self.batch.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        std::mem::replace(&mut self.batch, self.db.batch()).commit().map_err(internal)
    }
}

/// Make the renames in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(internal)
}
