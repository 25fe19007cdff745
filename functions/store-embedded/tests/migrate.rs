//! A data directory written by the redb store (`dps.redb`, the layout before the engine change) opens with all its
//! data: instances by scope and host, enrollments and groups, records and their by-group index, counters, TPM
//! challenges; etags keep guarding writes; the old file is kept as `dps.redb.migrated`. A migration cut short
//! (its half-built folder left behind) starts over.

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
