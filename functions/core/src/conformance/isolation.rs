//! Nothing of one scope is visible through another.

use super::*;

/// Two scopes holding the same IDs never see each other's data.
pub async fn scopes_are_isolated(store: Arc<dyn Store>) {
    let s = store.as_ref();
    let (a, b) = (scope(), scope());
    for (scope, note) in [(&a, "a"), (&b, "b")] {
        s.save(scope, IndividualEnrollment::make("dev-1", note), Precondition::NotExists)
            .await
            .expect("the same registration ID in another scope is a different enrollment");
        s.save(scope, EnrollmentGroup::make("group-1", note), Precondition::NotExists).await.unwrap();
        let mut record = sample_record("dev-1", Some("group-1"));
        record.device_id = Some(format!("device-{note}"));
        s.put_registration(scope, record, Precondition::NotExists.into()).await.unwrap();
    }
    s.save(&a, IndividualEnrollment::make("only-a", "a"), Precondition::NotExists).await.unwrap();
    s.add_operations(&a, "2024-05-01", OperationKind::ServiceOperation, 7).await.unwrap();

    assert_eq!(s.load::<IndividualEnrollment>(&b, "only-a").await.unwrap(), None);
    assert_eq!(
        s.load::<IndividualEnrollment>(&a, "dev-1").await.unwrap().unwrap().device_id.as_deref(),
        Some("device-a")
    );
    assert_eq!(
        s.load::<IndividualEnrollment>(&b, "dev-1").await.unwrap().unwrap().device_id.as_deref(),
        Some("device-b")
    );
    let b_context = s.device_context(&b, "dev-1").await.unwrap();
    assert_eq!(b_context.record.unwrap().device_id.as_deref(), Some("device-b"));
    let (b_all, _) = query_all::<IndividualEnrollment>(s, &b, 10).await;
    assert_eq!(ids(&b_all), vec!["dev-1".to_string()]);
    assert!(s.operations(&b, "2024-01-01", "2024-12-31").await.unwrap().iter().all(|c| c.count == 0));

    s.remove::<IndividualEnrollment>(&a, "dev-1", Precondition::None).await.unwrap();
    s.remove::<EnrollmentGroup>(&a, "group-1", Precondition::None).await.unwrap();
    s.delete_registration(&a, "dev-1", Precondition::None.into()).await.unwrap();
    assert!(s.load::<IndividualEnrollment>(&b, "dev-1").await.unwrap().is_some(), "deleting in A leaves B alone");
    assert!(s.load::<EnrollmentGroup>(&b, "group-1").await.unwrap().is_some());
    assert!(s.get_registration(&b, "dev-1").await.unwrap().is_some());
    let b_records = s.query_registrations(&b, "group-1", PageRequest { max_items: 10, continuation: None });
    assert_eq!(b_records.await.unwrap().items.len(), 1);
    let a_records = s.query_registrations(&a, "group-1", PageRequest { max_items: 10, continuation: None });
    assert!(a_records.await.unwrap().items.is_empty());
}
