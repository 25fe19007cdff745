//! Operation counting.

use super::*;

/// Counts add up per day and kind, and ranges are inclusive and ordered by date then kind.
pub async fn operations_count_and_range(store: Arc<dyn Store>) {
    let (s, scope) = (store.as_ref(), scope());
    use OperationKind::*;
    let adds = [
        ("2024-05-02", ServiceOperation, 3),
        ("2024-05-01", Registration, 2),
        ("2024-05-02", Registration, 1),
        ("2024-05-01", Registration, 5),
        ("2024-05-03", ReRegistration, 4),
        ("2024-04-30", Registration, 9),
        ("2024-05-02", ReRegistration, 6),
    ];
    for (date, kind, count) in adds {
        s.add_operations(&scope, date, kind, count).await.unwrap();
    }
    let got = nonzero(s.operations(&scope, "2024-05-01", "2024-05-02").await.unwrap());
    let want = vec![
        ("2024-05-01".to_string(), Registration, 7),
        ("2024-05-02".to_string(), Registration, 1),
        ("2024-05-02".to_string(), ReRegistration, 6),
        ("2024-05-02".to_string(), ServiceOperation, 3),
    ];
    assert_eq!(got, want, "inclusive range, summed, by date then kind");
    let one_day = nonzero(s.operations(&scope, "2024-05-03", "2024-05-03").await.unwrap());
    assert_eq!(one_day, vec![("2024-05-03".to_string(), ReRegistration, 4)]);
    assert!(nonzero(s.operations(&scope, "2024-06-01", "2024-06-30").await.unwrap()).is_empty());
    let all = nonzero(s.operations(&scope, "2024-01-01", "2024-12-31").await.unwrap());
    assert_eq!(all.iter().map(|c| c.2).sum::<u64>(), 30);
}

/// `put_registration` with a meter counts the operation if and only if the record is written.
pub async fn registration_meter_counts_iff_written(store: Arc<dyn Store>) {
    let (s, scope) = (store.as_ref(), scope());
    // A write of record `id` under `precondition` that counts one registration.
    let put_counted = |id: &str, precondition: Precondition| {
        s.put_registration(&scope, sample_record(id, None), precondition.counting(Some(registrations(1))))
    };
    let first = put_counted("dev-1", Precondition::NotExists).await.unwrap();
    assert_eq!(registrations_counted(s, &scope).await, BTreeMap::from([(OperationKind::Registration, 1)]));

    expect_err(put_counted("dev-1", Precondition::NotExists).await, "duplicate create", is_conflict);
    let stale = put_counted("dev-1", Precondition::Matches("\"stale\"".into())).await;
    expect_err(stale, "stale update", is_precondition_failed);
    let absent = put_counted("dev-2", Precondition::Matches("*".into())).await;
    expect_err(absent, "update of an absent record", is_not_found);
    assert_eq!(
        registrations_counted(s, &scope).await,
        BTreeMap::from([(OperationKind::Registration, 1)]),
        "failed writes count nothing"
    );

    let re = OperationCount { date: "2024-05-01".into(), kind: OperationKind::ReRegistration, count: 1 };
    s.put_registration(
        &scope,
        sample_record("dev-1", None),
        Precondition::Matches(first.etag.unwrap()).counting(Some(re)),
    )
    .await
    .unwrap();
    s.put_registration(&scope, sample_record("dev-3", None), Precondition::None.into()).await.unwrap();
    assert_eq!(
        registrations_counted(s, &scope).await,
        BTreeMap::from([(OperationKind::Registration, 1), (OperationKind::ReRegistration, 1)]),
        "a successful write counts its meter; no meter, no count"
    );
}

/// Enrollment writes and deletes, and registration deletes, with a meter count their operation if and only if
/// they change what is stored (the service API's writes are counted this way, so a crash cannot split them).
pub async fn write_meters_count_iff_written(store: Arc<dyn Store>) {
    let (s, scope) = (store.as_ref(), scope());
    let op = || Some(OperationCount { date: "2024-05-01".into(), kind: OperationKind::ServiceOperation, count: 1 });
    let service_ops =
        || async { registrations_counted(s, &scope).await.get(&OperationKind::ServiceOperation).copied() };

    let e = s.save(&scope, IndividualEnrollment::make("dev-1", "a"), Precondition::NotExists.counting(op()));
    let e = e.await.unwrap();
    let g = s.save(&scope, EnrollmentGroup::make("grp-1", "a"), Precondition::NotExists.counting(op()));
    g.await.unwrap();
    assert_eq!(service_ops().await, Some(2), "two created enrollments, two counts");

    let dup = s.save(&scope, IndividualEnrollment::make("dev-1", "b"), Precondition::NotExists.counting(op())).await;
    expect_err(dup, "create over an existing enrollment", is_conflict);
    let stale =
        s.save(&scope, EnrollmentGroup::make("grp-1", "b"), Precondition::Matches("\"x\"".into()).counting(op()));
    expect_err(stale.await, "stale group write", is_precondition_failed);
    let gone = s.remove::<EnrollmentGroup>(&scope, "grp-9", Precondition::None.counting(op())).await;
    expect_err(gone, "delete of an absent group", is_not_found);
    let stale_delete =
        s.remove::<IndividualEnrollment>(&scope, "dev-1", Precondition::Matches("\"x\"".into()).counting(op()));
    expect_err(stale_delete.await, "stale enrollment delete", is_precondition_failed);
    assert_eq!(service_ops().await, Some(2), "refused writes count nothing");

    s.remove::<IndividualEnrollment>(&scope, "dev-1", Precondition::Matches(e.etag().unwrap().into()).counting(op()))
        .await
        .unwrap();
    s.remove::<EnrollmentGroup>(&scope, "grp-1", Precondition::None.counting(op())).await.unwrap();
    s.put_registration(&scope, sample_record("dev-2", None), Precondition::None.into()).await.unwrap();
    let stale_record =
        s.delete_registration(&scope, "dev-2", Precondition::Matches("\"x\"".into()).counting(op())).await;
    expect_err(stale_record, "stale record delete", is_precondition_failed);
    s.delete_registration(&scope, "dev-2", Precondition::None.counting(op())).await.unwrap();
    expect_err(
        s.delete_registration(&scope, "dev-2", Precondition::None.counting(op())).await,
        "delete twice",
        is_not_found,
    );
    assert_eq!(service_ops().await, Some(5), "each delete that happened counts once");
    assert_eq!(s.load::<IndividualEnrollment>(&scope, "dev-1").await.unwrap(), None);
}
