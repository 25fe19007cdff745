//! A data directory written by the redb store (`dps.redb`, the layout before the engine change) opens with all its
//! data: instances by scope and host, enrollments and groups, records and their by-group index, counters, TPM
//! challenges; etags keep guarding writes; the old file is kept as `dps.redb.migrated`. A migration cut short
//! in the copy (its half-built folder left behind) starts over, one cut short between its renames is finished; a
//! `dps.redb` beside a store is refused, not ignored, and a file another process holds is not migrated under it.

use dps_core::model::{EnrollmentKind, OperationKind};
use dps_core::store::{PageRequest, Precondition, Store};
use dps_store_embedded::{DIR_NAME, EmbeddedStore};
use redb::TableDefinition;
use serde_json::json;

const SCOPE: &str = "0ne00000001";

/// A redb file with the redb store's tables and one row or two in each.
fn write_redb_store(path: &std::path::Path) {
    let bytes = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    let db = redb::Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let mut t = txn.open_table(TableDefinition::<&str, &[u8]>::new("instances")).unwrap();
        let instance = json!({"name": "Old", "idScope": "0ne00000001", "serviceHostName": "old.example.net",
            "etag": "\"i1\"", "linkedHubs": [], "authorizationPolicies": []});
        t.insert(SCOPE, bytes(instance).as_slice()).unwrap();
        let mut t = txn.open_table(TableDefinition::<&str, &str>::new("instance_hosts")).unwrap();
        t.insert("old.example.net", SCOPE).unwrap();
        let mut t = txn.open_table(TableDefinition::<&str, &str>::new("instance_names")).unwrap();
        t.insert("Old", SCOPE).unwrap();

        let scoped = |name| TableDefinition::<(&str, &str), &[u8]>::new(name);
        let mut t = txn.open_table(scoped("enrollments")).unwrap();
        let enrollment = json!({"registrationId": "Dev-1", "etag": "\"e1\"",
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "a2V5a2V5a2V5a2V5"}}});
        t.insert((SCOPE, "dev-1"), bytes(enrollment).as_slice()).unwrap();
        let mut t = txn.open_table(scoped("groups")).unwrap();
        let group = json!({"enrollmentGroupId": "Group-1", "etag": "\"g1\"", "attestation": {"type": "symmetricKey"}});
        t.insert((SCOPE, "group-1"), bytes(group).as_slice()).unwrap();
        let mut t = txn.open_table(scoped("registrations")).unwrap();
        for id in ["dev-2", "dev-3"] {
            let record = json!({"registrationId": id, "status": "assigned", "assignedHub": "hub-1.example.net",
                "enrollmentGroupId": "Group-1", "attestationType": "symmetricKey", "etag": format!("\"r-{id}\""),
                "operationId": format!("op-{id}"),
                "createdDateTimeUtc": "2024-05-01T12:00:00Z", "lastUpdatedDateTimeUtc": "2024-05-01T12:00:00Z"});
            t.insert((SCOPE, id), bytes(record).as_slice()).unwrap();
        }
        let mut t = txn.open_table(TableDefinition::<(&str, &str, &str), ()>::new("registrations_by_group")).unwrap();
        t.insert((SCOPE, "group-1", "dev-2"), ()).unwrap();
        t.insert((SCOPE, "group-1", "dev-3"), ()).unwrap();
        let mut t = txn.open_table(TableDefinition::<(&str, &str, &str), u64>::new("operations")).unwrap();
        t.insert((SCOPE, "2024-05-01", OperationKind::Registration.as_str()), 2).unwrap();
        let mut t = txn.open_table(scoped("tpm_challenges")).unwrap();
        let challenge = json!({"registrationId": "tpm-1", "key": "a2V5", "endorsementKeySha256": "ZWs=",
            "storageRootKeySha256": "c3Jr", "authenticationKey": "YWs=", "expiresAt": i64::MAX / 2, "etag": "\"t1\""});
        t.insert((SCOPE, "tpm-1"), bytes(challenge).as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

async fn assert_migrated(store: &EmbeddedStore) {
    let instance = store.instance_by_host("OLD.example.net").await.unwrap().expect("the instance by host");
    assert_eq!((instance.name.as_str(), instance.etag.as_deref()), ("Old", Some("\"i1\"")));
    assert_eq!(store.list_instances().await.unwrap().len(), 1);
    let enrollment = store.get_enrollment(SCOPE, EnrollmentKind::Individual, "DEV-1").await.unwrap().unwrap();
    assert_eq!((enrollment.id(), enrollment.etag()), ("Dev-1", Some("\"e1\"")));
    assert!(store.get_enrollment(SCOPE, EnrollmentKind::Group, "group-1").await.unwrap().is_some());
    let page = PageRequest { max_items: 10, continuation: None };
    let records = store.query_registrations(SCOPE, "group-1", page).await.unwrap().items;
    let ids: Vec<&str> = records.iter().map(|r| r.registration_id.as_str()).collect();
    assert_eq!(ids, ["dev-2", "dev-3"], "the by-group index came along");
    let counts = store.operations(SCOPE, "2024-05-01", "2024-05-01").await.unwrap();
    assert_eq!(counts.iter().map(|c| (c.kind, c.count)).collect::<Vec<_>>(), [(OperationKind::Registration, 2)]);
    assert!(store.get_tpm_challenge(SCOPE, "tpm-1").await.unwrap().is_some());

    // The old etags still guard writes, and a write after the migration is counted on top of the old count.
    let record = store.get_registration(SCOPE, "dev-2").await.unwrap().unwrap();
    let stale = store.put_registration(SCOPE, record.clone(), Precondition::Matches("\"other\"".into()).into());
    assert!(matches!(stale.await, Err(dps_core::Error::PreconditionFailed(_))));
    store.put_registration(SCOPE, record, Precondition::Matches("\"r-dev-2\"".into()).into()).await.unwrap();
    store.add_operations(SCOPE, "2024-05-01", OperationKind::Registration, 1).await.unwrap();
    let counts = store.operations(SCOPE, "2024-05-01", "2024-05-01").await.unwrap();
    assert_eq!(counts[0].count, 3);
}

#[tokio::test]
async fn a_redb_data_dir_is_migrated_on_first_open_and_kept_as_a_backup() {
    let dir = tempfile::tempdir().unwrap();
    write_redb_store(&dir.path().join("dps.redb"));

    let store = EmbeddedStore::open(dir.path()).expect("open migrates");
    assert_migrated(&store).await;
    assert!(!dir.path().join("dps.redb").exists(), "the old file is not read again");
    assert!(dir.path().join("dps.redb.migrated").is_file(), "and is kept as a backup");
    assert!(dir.path().join(DIR_NAME).is_dir());
    drop(store);

    // Opened again: the migrated data, with the writes made after the migration, and no second migration.
    let store = EmbeddedStore::open(dir.path()).unwrap();
    assert_eq!(store.operations(SCOPE, "2024-05-01", "2024-05-01").await.unwrap()[0].count, 3);
}

#[tokio::test]
async fn a_migration_cut_short_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    write_redb_store(&dir.path().join("dps.redb"));
    // What a crash in the middle of the copy leaves: a half-built folder next to the old file.
    let half = dir.path().join("store.migrating");
    std::fs::create_dir_all(half.join("keyspaces")).unwrap();
    std::fs::write(half.join("junk"), b"half a copy").unwrap();

    let store = EmbeddedStore::open(dir.path()).expect("open migrates");
    assert_migrated(&store).await;
    assert!(!half.exists(), "the half-built folder is gone");
}

#[tokio::test]
async fn a_migration_cut_short_between_its_renames_is_finished() {
    let dir = tempfile::tempdir().unwrap();
    write_redb_store(&dir.path().join("dps.redb"));
    drop(EmbeddedStore::open(dir.path()).unwrap());
    // What a crash after the old file's rename and before the folder's leaves: the complete copy, not yet `store/`.
    std::fs::rename(dir.path().join(DIR_NAME), dir.path().join("store.migrating")).unwrap();

    let store = EmbeddedStore::open(dir.path()).expect("open finishes the migration");
    assert_migrated(&store).await;
    assert!(!dir.path().join("store.migrating").exists());
}

#[tokio::test]
async fn a_redb_file_beside_the_store_is_refused_and_both_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    write_redb_store(&dir.path().join("dps.redb"));
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store.add_operations(SCOPE, "2024-05-02", OperationKind::Registration, 5).await.unwrap();
    drop(store);
    // An operator restores the old file (a backup, a downgrade and back): which data is wanted is theirs to say.
    std::fs::copy(dir.path().join("dps.redb.migrated"), dir.path().join("dps.redb")).unwrap();

    let refused = EmbeddedStore::open(dir.path()).err().expect("the open is refused");
    assert!(matches!(refused, dps_core::Error::Invalid(_)), "{refused:?}");
    assert!(refused.to_string().contains("move one of them"), "{refused}");
    assert!(dir.path().join("dps.redb").is_file() && dir.path().join("dps.redb.migrated").is_file());

    // Moving the store away migrates the restored file, and the first migration's backup is not overwritten.
    std::fs::rename(dir.path().join(DIR_NAME), dir.path().join("store.old")).unwrap();
    let store = EmbeddedStore::open(dir.path()).expect("open migrates the restored file");
    assert_migrated(&store).await;
    assert!(dir.path().join("dps.redb.migrated").is_file() && dir.path().join("dps.redb.migrated.2").is_file());
}

#[tokio::test]
async fn a_redb_file_in_use_is_not_migrated_under_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dps.redb");
    write_redb_store(&file);
    let owner = redb::Database::open(&file).unwrap();

    assert!(EmbeddedStore::open(dir.path()).is_err(), "a second process cannot migrate a file another holds");
    assert!(!dir.path().join(DIR_NAME).exists() && file.is_file());
    drop(owner);
    assert_migrated(&EmbeddedStore::open(dir.path()).unwrap()).await;
}
