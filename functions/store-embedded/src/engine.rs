//! The journal engine: one fjall database (an LSM tree per table, one write-ahead journal), the key encoding, and
//! the write transaction the group commit runs its batch in.
//!
//! fjall's write batch is atomic and, committed with `PersistMode::SyncData`, durable before any of it is visible:
//! the batch is appended to the journal and `fdatasync`ed, then applied to the memtables. A batch cannot read what
//! it holds, so [`Txn`] keeps what the group commit wrote so far in an overlay that its reads look at first (each
//! write sees the writes before it, as in a transaction of its own) and becomes the batch only at the commit.

use std::collections::HashMap;
use std::path::Path;

use dps_core::error::{Error, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable, Snapshot, UserValue};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::writer::Engine;

/// The tables, by name (each a keyspace of its own).
pub(crate) const TABLES: [&str; 9] = [
    "instances",
    "instance_hosts",
    "instance_names",
    "enrollments",
    "groups",
    "registrations",
    "registrations_by_group",
    "operations",
    "tpm_challenges",
];

/// The tables, one keyspace each (the same names and key parts as the redb store's; the crate docs list them).
pub(crate) struct Tables {
    pub instances: Keyspace,
    pub instance_hosts: Keyspace,
    pub instance_names: Keyspace,
    pub enrollments: Keyspace,
    pub groups: Keyspace,
    pub registrations: Keyspace,
    pub registrations_by_group: Keyspace,
    pub operations: Keyspace,
    pub tpm_challenges: Keyspace,
}

/// The database and its tables.
pub(crate) struct Journal {
    pub db: Database,
    pub tables: Tables,
}

impl Journal {
    /// Open (or create) the database in `dir`; a `temporary` one is removed when dropped.
    pub(crate) fn open(dir: &Path, temporary: bool) -> Result<Self> {
        let db = Database::builder(dir).temporary(temporary).open().map_err(internal)?;
        let [instances, instance_hosts, instance_names, enrollments, groups, registrations, by_group, operations, tpm] =
            TABLES.map(|name| db.keyspace(name, KeyspaceCreateOptions::default));
        let tables = Tables {
            instances: instances.map_err(internal)?,
            instance_hosts: instance_hosts.map_err(internal)?,
            instance_names: instance_names.map_err(internal)?,
            enrollments: enrollments.map_err(internal)?,
            groups: groups.map_err(internal)?,
            registrations: registrations.map_err(internal)?,
            registrations_by_group: by_group.map_err(internal)?,
            operations: operations.map_err(internal)?,
            tpm_challenges: tpm.map_err(internal)?,
        };
        Ok(Self { db, tables })
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

/// A key of `parts` joined by a zero byte, which no ID or scope contains: tuples order element by element, and
/// one scope's (or one group's) rows are a contiguous range.
pub(crate) fn key(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// The last part of a key (the ID of a scoped row).
pub(crate) fn last_part(key: &[u8]) -> Result<&str> {
    let tail = key.rsplit(|b| *b == 0).next().unwrap_or(key);
    std::str::from_utf8(tail).map_err(internal)
}

/// Point reads, from a snapshot or inside a write.
pub(crate) trait Get {
    fn read(&self, table: &Keyspace, key: &[u8]) -> Result<Option<UserValue>>;
}

impl Get for Snapshot {
    fn read(&self, table: &Keyspace, key: &[u8]) -> Result<Option<UserValue>> {
        checked(key).map_or(Ok(None), |key| Readable::get(self, table, key).map_err(internal))
    }
}

/// The write transaction of one group commit: what it wrote so far, each key once (its last write), by table and
/// key. Committing turns it into one fjall batch, so the batch never holds two writes of one key.
pub(crate) struct Txn {
    written: HashMap<(u64, Vec<u8>), (Keyspace, Option<UserValue>)>,
}

impl Txn {
    pub(crate) fn insert(&mut self, table: &Keyspace, key: Vec<u8>, value: impl Into<UserValue>) {
        self.written.insert((table.id(), key), (table.clone(), Some(value.into())));
    }

    pub(crate) fn remove(&mut self, table: &Keyspace, key: Vec<u8>) {
        self.written.insert((table.id(), key), (table.clone(), None));
    }
}

impl Get for Txn {
    fn read(&self, table: &Keyspace, key: &[u8]) -> Result<Option<UserValue>> {
        match self.written.get(&(table.id(), key.to_vec())) {
            Some((_, written)) => Ok(written.clone()),
            None => checked(key).map_or(Ok(None), |key| table.get(key).map_err(internal)),
        }
    }
}

/// The key, if the engine can hold it (fjall keys are at most 64 KiB; no ID or host name comes near that, but a
/// lookup by a longer string is a miss, not a panic).
fn checked(key: &[u8]) -> Option<&[u8]> {
    (key.len() <= usize::from(u16::MAX)).then_some(key)
}

impl Engine for Journal {
    type Txn = Txn;

    fn begin(&self) -> Result<Txn> {
        Ok(Txn { written: HashMap::new() })
    }

    fn commit(&self, txn: Txn) -> Result<()> {
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncData));
        for ((_, key), (table, value)) in txn.written {
            match value {
                Some(value) => batch.insert(&table, key, value),
                None => batch.remove(&table, key),
            }
        }
        batch.commit().map_err(internal)
    }

    fn abort(&self, txn: Txn) {
        drop(txn);
    }
}
