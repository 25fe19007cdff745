//! Registration records and their by-group listing.

use super::*;

/// Records follow the same conditional-write and case rules as enrollments.
pub async fn registration_put_get_delete(store: Arc<dyn Store>) {
    let (s, scope, mut seen) = (store.as_ref(), scope(), HashSet::new());
    let input = sample_record("Dev-Rec", None);
    let written = s.put_registration(&scope, input.clone(), Precondition::NotExists.into()).await.unwrap();
    let etag1 = fresh_etag(written.etag.as_deref(), &mut seen);
    assert_eq!(RegistrationRecord { etag: None, ..written.clone() }, input, "stored as given");
    assert_eq!(s.get_registration(&scope, "dev-rec").await.unwrap(), Some(written.clone()));
    assert_eq!(s.get_registration(&scope, "other").await.unwrap(), None);

    let dup = s.put_registration(&scope, sample_record("DEV-REC", None), Precondition::NotExists.into()).await;
    expect_err(dup, "second record for a device", is_conflict);

    let mut next = input.clone();
    next.status = RegistrationStatus::Failed;
    next.error_code = Some(400_207);
    let updated = s.put_registration(&scope, next.clone(), Precondition::Matches(etag1.clone()).into()).await.unwrap();
    fresh_etag(updated.etag.as_deref(), &mut seen);
    let stale = s.put_registration(&scope, input.clone(), Precondition::Matches(etag1.clone()).into()).await;
    expect_err(stale, "stale record write", is_precondition_failed);
    assert_eq!(s.get_registration(&scope, "Dev-Rec").await.unwrap(), Some(updated.clone()));

    let stale_delete = s.delete_registration(&scope, "dev-rec", Precondition::Matches(etag1).into()).await;
    expect_err(stale_delete, "stale record delete", is_precondition_failed);
    s.delete_registration(&scope, "DEV-rec", Precondition::Matches(updated.etag.clone().unwrap()).into())
        .await
        .unwrap();
    assert_eq!(s.get_registration(&scope, "dev-rec").await.unwrap(), None);
    expect_err(s.delete_registration(&scope, "dev-rec", Precondition::None.into()).await, "delete twice", is_not_found);
    let again = s.put_registration(&scope, input, Precondition::NotExists.into()).await.unwrap();
    fresh_etag(again.etag.as_deref(), &mut seen);
}

/// Querying by group returns only that group's records, paged in key order, and follows moves and deletes.
pub async fn registration_query_by_group(store: Arc<dyn Store>) {
    let (s, scope) = (store.as_ref(), scope());
    let mut expected = Vec::new();
    for i in [4, 0, 3, 1, 2] {
        let id = format!("G1-Dev-{i}");
        s.put_registration(&scope, sample_record(&id, Some("Group-1")), Precondition::NotExists.into()).await.unwrap();
        expected.push(id);
    }
    for i in 0..3 {
        let id = format!("g2-dev-{i}");
        s.put_registration(&scope, sample_record(&id, Some("group-2")), Precondition::NotExists.into()).await.unwrap();
    }
    for i in 0..2 {
        let id = format!("solo-{i}");
        s.put_registration(&scope, sample_record(&id, None), Precondition::NotExists.into()).await.unwrap();
    }
    expected.sort_by_key(|s| key(s));

    let all = |group: &'static str, max_items: usize| {
        let store = store.clone();
        let scope = scope.clone();
        async move {
            let mut out = Vec::new();
            let mut page = PageRequest { max_items, continuation: None };
            loop {
                let got = store.query_registrations(&scope, group, page.clone()).await.unwrap();
                assert!(got.items.len() <= max_items);
                out.extend(got.items.into_iter().map(|r| r.registration_id));
                match got.continuation {
                    Some(c) => page.continuation = Some(c),
                    None => return out,
                }
            }
        }
    };
    assert_eq!(all("Group-1", 2).await, expected, "group 1, pages of 2");
    assert_eq!(all("group-1", 1).await, expected, "group IDs are case-insensitive, pages of 1");
    assert_eq!(all("GROUP-1", 50).await, expected, "one big page");
    assert_eq!(all("group-2", 50).await.len(), 3);
    assert!(all("group-3", 50).await.is_empty(), "an unknown group has no records");

    // A record that moves to another group, or is deleted, leaves the first group's listing.
    let moved = s.get_registration(&scope, "g1-dev-0").await.unwrap().unwrap();
    let etag = moved.etag.clone().unwrap();
    let moved = RegistrationRecord { enrollment_group_id: Some("group-2".into()), ..moved };
    s.put_registration(&scope, moved, Precondition::Matches(etag).into()).await.unwrap();
    s.delete_registration(&scope, "G1-DEV-1", Precondition::None.into()).await.unwrap();
    let individual = s.get_registration(&scope, "g1-dev-2").await.unwrap().unwrap();
    let individual = RegistrationRecord { enrollment_group_id: None, ..individual };
    s.put_registration(&scope, individual, Precondition::None.into()).await.unwrap();
    assert_eq!(all("group-1", 2).await, vec!["G1-Dev-3".to_string(), "G1-Dev-4".into()]);
    assert_eq!(all("group-2", 2).await.len(), 4);
}

/// `device_context` returns the enrollment and the record of one device, each when present.
pub async fn device_context_reads_both(store: Arc<dyn Store>) {
    let (s, scope) = (store.as_ref(), scope());
    let empty = s.device_context(&scope, "dev-1").await.unwrap();
    assert_eq!((empty.enrollment, empty.record), (None, None));

    let enrollment = s.save(&scope, IndividualEnrollment::make("Dev-1", "a"), Precondition::NotExists).await.unwrap();
    let only_enrollment = s.device_context(&scope, "dev-1").await.unwrap();
    assert_eq!((only_enrollment.enrollment.as_ref(), only_enrollment.record), (Some(&enrollment), None));

    let record = s.put_registration(&scope, sample_record("DEV-1", None), Precondition::NotExists.into()).await;
    let record = record.unwrap();
    let both = s.device_context(&scope, "dev-1").await.unwrap();
    assert_eq!(both.enrollment, Some(enrollment));
    assert_eq!(both.record, Some(record.clone()));

    s.remove::<IndividualEnrollment>(&scope, "dev-1", Precondition::None).await.unwrap();
    let only_record = s.device_context(&scope, "DEV-1").await.unwrap();
    assert_eq!((only_record.enrollment, only_record.record), (None, Some(record)));
}
