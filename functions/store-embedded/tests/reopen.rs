//! Data written before the store is closed is there after it is opened again.

use dps_core::model::{OperationKind, RegistrationRecord};
use dps_core::store::{PageRequest, Precondition, Store};
use dps_store_embedded::{DIR_NAME, EmbeddedStore};

fn record(id: &str) -> RegistrationRecord {
    serde_json::from_value(serde_json::json!({
        "registrationId": id,
        "status": "assigned",
        "assignedHub": "hub-1.example.net",
        "createdDateTimeUtc": "2024-05-01T12:00:00Z",
        "lastUpdatedDateTimeUtc": "2024-05-01T12:00:00Z",
        "enrollmentGroupId": "group-1",
        "attestationType": "symmetricKey",
        "operationId": "op-1"
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let written = {
        let store = EmbeddedStore::open(&data_dir).expect("create in a new directory");
        let meter =
            dps_core::model::OperationCount { date: "2024-05-01".into(), kind: OperationKind::Registration, count: 1 };
        let written =
            store.put_registration("0ne00000001", record("Dev-1"), Precondition::NotExists.counting(Some(meter)));
        let written = written.await.unwrap();
        store.add_operations("0ne00000001", "2024-05-02", OperationKind::ServiceOperation, 3).await.unwrap();
        written
    };
    assert!(data_dir.join(DIR_NAME).is_dir(), "one store folder in the data directory");

    let store = EmbeddedStore::open(&data_dir).expect("reopen");
    assert_eq!(store.get_registration("0NE00000001", "dev-1").await.unwrap(), Some(written.clone()));
    let page = store.query_registrations("0ne00000001", "GROUP-1", PageRequest { max_items: 10, continuation: None });
    assert_eq!(page.await.unwrap().items, vec![written.clone()], "indexes survive too");
    let counts = store.operations("0ne00000001", "2024-05-01", "2024-05-31").await.unwrap();
    let counts: Vec<(String, OperationKind, u64)> = counts.into_iter().map(|c| (c.date, c.kind, c.count)).collect();
    assert_eq!(
        counts,
        vec![
            ("2024-05-01".into(), OperationKind::Registration, 1),
            ("2024-05-02".into(), OperationKind::ServiceOperation, 3)
        ]
    );
    // The etag from before the restart still guards writes.
    let stale = store.put_registration("0ne00000001", record("dev-1"), Precondition::Matches("\"old\"".into()).into());
    assert!(matches!(stale.await, Err(dps_core::Error::PreconditionFailed(_))));
    let etag = written.etag.unwrap();
    store.put_registration("0ne00000001", record("dev-1"), Precondition::Matches(etag).into()).await.unwrap();
}

/// Many writes of one key in one group commit (a day's counter, a record written then overwritten) keep their
/// last value across a restart, as they read before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_written_many_times_in_one_commit_keeps_its_last_value_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        writes.spawn(async move {
            store.add_operations("0ne00000001", "2024-05-01", OperationKind::Registration, 1).await.unwrap();
            let mut r = record("dev-1");
            r.operation_id = format!("op-{i}");
            store.put_registration("0ne00000001", r, Precondition::None.into()).await.unwrap();
        });
    }
    writes.join_all().await;
    let stats = store.commit_stats();
    assert!(stats.writes > stats.commits, "some writes shared a commit ({stats:?}), or this tests nothing");
    let before = store.get_registration("0ne00000001", "dev-1").await.unwrap().unwrap();
    drop(store);

    let store = EmbeddedStore::open(dir.path()).unwrap();
    let counts = store.operations("0ne00000001", "2024-05-01", "2024-05-01").await.unwrap();
    assert_eq!(counts[0].count, 200);
    assert_eq!(store.get_registration("0ne00000001", "dev-1").await.unwrap().unwrap(), before);
}
