//! Individual enrollments and groups, written once over both kinds.

use super::*;

/// NotExists / Matches / None, fresh etags, refused writes change nothing.
pub async fn item_preconditions<T: Sample>(store: Arc<dyn Store>) {
    let (store, scope, mut seen) = (store.as_ref(), scope(), HashSet::new());

    let created = store.save(&scope, T::make("dev-1", "a"), Precondition::NotExists).await.expect("create");
    let etag1 = fresh_etag(created.etag(), &mut seen);
    assert_eq!(without_etag(created.clone()), T::make("dev-1", "a"), "stored as given");
    assert_eq!(store.load::<T>(&scope, "dev-1").await.unwrap(), Some(created.clone()), "read back whole");

    let again = store.save(&scope, T::make("dev-1", "b"), Precondition::NotExists).await;
    expect_err(again, "create over an existing item", is_conflict);

    let replaced = store.save(&scope, T::make("dev-1", "c"), Precondition::Matches(etag1.clone())).await.unwrap();
    let etag2 = fresh_etag(replaced.etag(), &mut seen);
    assert_eq!(without_etag(replaced.clone()), T::make("dev-1", "c"));

    let stale = store.save(&scope, T::make("dev-1", "d"), Precondition::Matches(etag1)).await;
    expect_err(stale, "write with a stale etag", is_precondition_failed);
    assert_eq!(store.load::<T>(&scope, "dev-1").await.unwrap(), Some(replaced), "a refused write changes nothing");

    let bare = etag2.trim_matches('"').to_string();
    let unquoted = store.save(&scope, T::make("dev-1", "e"), Precondition::Matches(bare)).await.unwrap();
    fresh_etag(unquoted.etag(), &mut seen);

    let any = store.save(&scope, T::make("dev-1", "f"), Precondition::Matches("*".into())).await.unwrap();
    fresh_etag(any.etag(), &mut seen);

    let upsert = store.save(&scope, T::make("dev-1", "g"), Precondition::None).await.unwrap();
    fresh_etag(upsert.etag(), &mut seen);
    let upsert_new = store.save(&scope, T::make("dev-2", "h"), Precondition::None).await.unwrap();
    fresh_etag(upsert_new.etag(), &mut seen);
    assert_eq!(store.load::<T>(&scope, "dev-2").await.unwrap(), Some(upsert_new));

    let absent = store.save(&scope, T::make("dev-3", "i"), Precondition::Matches("*".into())).await;
    expect_err(absent, "conditional write of an absent item", is_not_found);
    assert_eq!(store.load::<T>(&scope, "dev-3").await.unwrap(), None, "nothing created");

    // An etag the caller echoes back in the entity body is ignored: the store sets its own.
    let mut with_body_etag = T::make("dev-1", "j");
    with_body_etag.spec_mut().etag = Some("\"caller-chosen\"".into());
    let written = store.save(&scope, with_body_etag, Precondition::None).await.unwrap();
    fresh_etag(written.etag(), &mut seen);
    assert_eq!(store.load::<T>(&scope, "dev-1").await.unwrap(), Some(written));
}

/// IDs are case-insensitive keys; the entity keeps its case.
pub async fn item_keys_are_case_insensitive<T: Sample>(store: Arc<dyn Store>) {
    let (store, scope) = (store.as_ref(), scope());
    let created = store.save(&scope, T::make("Dev-MiXed.1", "a"), Precondition::NotExists).await.unwrap();
    for spelling in ["dev-mixed.1", "DEV-MIXED.1", "Dev-MiXed.1"] {
        let got = store.load::<T>(&scope, spelling).await.unwrap().expect("found whatever the case");
        assert_eq!(got.id(), "Dev-MiXed.1", "the original case is kept");
        assert_eq!(got, created);
    }
    let dup = store.save(&scope, T::make("DEV-mixed.1", "b"), Precondition::NotExists).await;
    expect_err(dup, "create with another case", is_conflict);

    let etag = created.etag().unwrap().to_string();
    let renamed = store.save(&scope, T::make("dev-MIXED.1", "c"), Precondition::Matches(etag)).await.unwrap();
    assert_eq!(renamed.id(), "dev-MIXED.1", "an update may change the case it is shown in");
    let (all, _) = query_all::<T>(store, &scope, 10).await;
    assert_eq!(ids(&all), vec!["dev-MIXED.1".to_string()], "still one item");

    store.remove::<T>(&scope, "DEV-mixed.1", Precondition::None).await.expect("delete whatever the case");
    assert_eq!(store.load::<T>(&scope, "dev-mixed.1").await.unwrap(), None);
}

/// Deletes: NotFound when absent, PreconditionFailed on a stale etag.
pub async fn item_delete<T: Sample>(store: Arc<dyn Store>) {
    let (store, scope) = (store.as_ref(), scope());
    expect_err(store.remove::<T>(&scope, "nobody", Precondition::None).await, "delete absent", is_not_found);
    expect_err(
        store.remove::<T>(&scope, "nobody", Precondition::Matches("*".into())).await,
        "conditional delete absent",
        is_not_found,
    );

    let first = store.save(&scope, T::make("dev-1", "a"), Precondition::NotExists).await.unwrap();
    let second = store.save(&scope, T::make("dev-1", "b"), Precondition::None).await.unwrap();
    let stale = store.remove::<T>(&scope, "dev-1", Precondition::Matches(first.etag().unwrap().into())).await;
    expect_err(stale, "delete with a stale etag", is_precondition_failed);
    assert_eq!(store.load::<T>(&scope, "dev-1").await.unwrap(), Some(second.clone()), "still there");

    store.remove::<T>(&scope, "dev-1", Precondition::Matches(second.etag().unwrap().into())).await.unwrap();
    assert_eq!(store.load::<T>(&scope, "dev-1").await.unwrap(), None);
    expect_err(store.remove::<T>(&scope, "dev-1", Precondition::None).await, "delete twice", is_not_found);
    let (all, _) = query_all::<T>(store, &scope, 10).await;
    assert!(all.is_empty(), "gone from queries too");

    store.save(&scope, T::make("dev-2", "c"), Precondition::NotExists).await.unwrap();
    store.remove::<T>(&scope, "dev-2", Precondition::None).await.expect("unconditional delete");
    assert_eq!(store.load::<T>(&scope, "dev-2").await.unwrap(), None);
    store.save(&scope, T::make("dev-2", "d"), Precondition::NotExists).await.expect("create again after delete");
}

/// Paging in ascending key order until the continuation is None.
pub async fn item_paging<T: Sample>(store: Arc<dyn Store>) {
    let (store, scope) = (store.as_ref(), scope());
    let (empty, pages) = query_all::<T>(store, &scope, 5).await;
    assert!(empty.is_empty() && pages == 1, "an empty scope is one empty page");

    let names = ["m-7", "B-2", "a-1", "Z-9", "c.3", "b-10", "x:5"];
    for (i, name) in names.iter().enumerate() {
        store.save(&scope, T::make(name, &i.to_string()), Precondition::NotExists).await.unwrap();
    }
    let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    expected.sort_by_key(|s| key(s));

    let (all, pages) = query_all::<T>(store, &scope, 1).await;
    assert_eq!(ids(&all), expected, "page size 1: ascending key order, nothing repeated or lost");
    assert!(pages == 7 || pages == 8, "page size 1 takes one page per item (and maybe an empty last): {pages}");

    let (all, pages) = query_all::<T>(store, &scope, 3).await;
    assert_eq!(ids(&all), expected, "page size 3");
    assert!((3..=4).contains(&pages), "page size 3 over 7 items: {pages} pages");

    let page = store.page::<T>(&scope, PageRequest { max_items: 100, continuation: None }).await.unwrap();
    assert_eq!(ids(&page.items), expected, "one page larger than the set");
    assert_eq!(page.continuation, None, "a page that holds the rest is the last");

    let first = store.page::<T>(&scope, PageRequest { max_items: 2, continuation: None }).await.unwrap();
    assert_eq!(ids(&first.items), expected[..2].to_vec());
    assert!(first.continuation.is_some(), "more to come");
    for item in &first.items {
        assert_eq!(
            store.load::<T>(&scope, item.id()).await.unwrap().as_ref(),
            Some(item),
            "queries return whole items"
        );
    }
}
