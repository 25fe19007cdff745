//! Moving a data directory from the redb store (`dps.redb`, one file, used up to this engine change) to the fjall
//! store, once, on the first open.
//!
//! With the redb file open (redb locks it, so a second process cannot copy the same directory at the same time;
//! one that opens between the two renames below only finishes the last one), the rows are copied table by table
//! into a new database in `store.migrating/` and made durable; then the old file is renamed to `dps.redb.migrated`
//! (a backup, never read again; an earlier backup is not overwritten: the name takes a number) and last the folder
//! to `store/`, each rename made durable before the next. A crash during the copy leaves the old file the only
//! store (the half-built folder is removed on the next open and the copy starts over); a crash between the renames
//! leaves a complete `store.migrating/` and no `dps.redb`, and the next open only renames the folder. `store/`
//! beside a `dps.redb` never comes out of a migration (a restored backup, a downgrade): the open refuses, rather
//! than pick one and ignore the other. Keys keep their parts and values their bytes: the layouts are the same
//! table for table.

use std::path::Path;

use dps_core::error::{Error, Result};
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

/// Migrate the redb store in `data_dir`, if there is one, or finish a migration cut short between its renames.
pub(crate) fn from_redb(data_dir: &Path) -> Result<()> {
    let (old, target, staging) = (data_dir.join(REDB_FILE), data_dir.join(DIR_NAME), data_dir.join(MIGRATING));
    if !old.is_file() {
        if staging.is_dir() && !target.exists() {
            // Cut short after the copy was durable and the old file renamed: only the last rename is left.
            std::fs::rename(&staging, &target).map_err(internal)?;
            return sync_dir(data_dir);
        }
        return Ok(());
    }
    if target.exists() {
        return Err(Error::invalid(format!(
            "{} holds both {DIR_NAME}/ (the store) and {REDB_FILE} (a store from before the engine change, not the \
             one {DIR_NAME}/ was migrated from): move one of them out of the data directory",
            data_dir.display()
        )));
    }
    let redb = redb::Database::open(&old).map_err(|e| internal(format!("cannot open {}: {e}", old.display())))?;
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(internal)?;
    }
    let rows = copy(&redb, &staging)?;
    let backup = free_name(data_dir);
    std::fs::rename(&old, &backup).map_err(internal)?;
    sync_dir(data_dir)?;
    match std::fs::rename(&staging, &target) {
        // Another process opening between the two renames finished the migration (see `from_redb`'s first branch).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && target.is_dir() => {}
        renamed => renamed.map_err(internal)?,
    }
    sync_dir(data_dir)?;
    drop(redb);
    tracing::info!(rows, to = %target.display(), backup = %backup.display(), "migrated the redb store");
    Ok(())
}

/// `dps.redb.migrated`, or with a number after it (`.2`, `.3`, …) if an earlier migration's backup has the name.
fn free_name(data_dir: &Path) -> std::path::PathBuf {
    let numbered = (2..).map(|n| data_dir.join(format!("{REDB_MIGRATED}.{n}")));
    std::iter::once(data_dir.join(REDB_MIGRATED)).chain(numbered).find(|p| !p.exists()).expect("an unused name")
}

/// Copy every row of the redb store into a new fjall database in `to`; the number of rows copied.
fn copy(redb: &redb::Database, to: &Path) -> Result<usize> {
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
