//! Instances: create, look up, update.

use super::*;

/// An instance is created with an etag and found by scope and by host, whatever their case.
pub async fn instance_create_and_lookup(store: Arc<dyn Store>) {
    let scope = scope();
    let input = sample_instance(&scope);
    let created = store.create_instance(input.clone()).await.expect("create");
    fresh_etag(created.etag.as_deref(), &mut HashSet::new());
    assert_eq!(Instance { etag: None, ..created.clone() }, input, "create stores what it was given");

    let by_scope = store.instance_by_scope(&scope).await.unwrap().expect("found by scope");
    assert_eq!(by_scope, created);
    let by_lower_scope = store.instance_by_scope(&scope.to_ascii_lowercase()).await.unwrap();
    assert_eq!(by_lower_scope.as_ref(), Some(&created), "scopes are case-insensitive");
    let by_host = store.instance_by_host(&input.service_host_name.to_ascii_uppercase()).await.unwrap();
    assert_eq!(by_host.as_ref(), Some(&created), "host names are case-insensitive");

    assert_eq!(store.instance_by_scope(&crate::ids::new_id_scope()).await.unwrap(), None);
    assert_eq!(store.instance_by_host("nobody.example.net").await.unwrap(), None);
}

/// A taken scope, name or host name is a conflict, and a refused create leaves nothing findable.
pub async fn instance_conflicts_leave_nothing_behind(store: Arc<dyn Store>) {
    let first = store.create_instance(sample_instance(&scope())).await.expect("create");

    let same_scope = Instance { id_scope: first.id_scope.to_ascii_lowercase(), ..sample_instance("x") };
    expect_err(store.create_instance(same_scope.clone()).await, "duplicate scope", is_conflict);
    assert_eq!(store.instance_by_host(&same_scope.service_host_name).await.unwrap(), None, "no half-written host");

    let other_scope = scope();
    let same_name = Instance { name: first.name.clone(), ..sample_instance(&other_scope) };
    expect_err(store.create_instance(same_name.clone()).await, "duplicate name", is_conflict);
    assert_eq!(store.instance_by_scope(&other_scope).await.unwrap(), None, "no half-written instance");
    assert_eq!(store.instance_by_host(&same_name.service_host_name).await.unwrap(), None);

    let same_host =
        Instance { service_host_name: first.service_host_name.to_ascii_uppercase(), ..sample_instance(&other_scope) };
    expect_err(store.create_instance(same_host).await, "duplicate host name", is_conflict);
    assert_eq!(store.instance_by_scope(&other_scope).await.unwrap(), None, "no half-written instance");

    assert_eq!(store.instance_by_scope(&first.id_scope).await.unwrap(), Some(first.clone()), "first is intact");
    assert_eq!(store.instance_by_host(&first.service_host_name).await.unwrap(), Some(first));

    // The refused names are still free for a well-formed instance.
    store.create_instance(sample_instance(&other_scope)).await.expect("create after refusals");
}

/// Updates are conditional on the etag, return a fresh one, and are visible through both lookups.
pub async fn instance_update_with_etag(store: Arc<dyn Store>) {
    let mut seen = HashSet::new();
    let created = store.create_instance(sample_instance(&scope())).await.unwrap();
    let first_etag = fresh_etag(created.etag.as_deref(), &mut seen);

    let mut change = created.clone();
    change.allocation_policy = AllocationPolicy::GeoLatency;
    change.linked_hubs.push(LinkedHub {
        host_name: "hub-2.example.net".into(),
        allocation_weight: 1,
        apply_allocation_policy: false,
        location: None,
        connector: None,
    });
    let updated = store.update_instance(change.clone(), Precondition::Matches(first_etag.clone())).await.unwrap();
    fresh_etag(updated.etag.as_deref(), &mut seen);
    assert_eq!(Instance { etag: None, ..updated.clone() }, Instance { etag: None, ..change.clone() });
    assert_eq!(store.instance_by_scope(&created.id_scope).await.unwrap(), Some(updated.clone()));
    assert_eq!(store.instance_by_host(&created.service_host_name).await.unwrap(), Some(updated.clone()));

    let stale = store.update_instance(created.clone(), Precondition::Matches(first_etag)).await;
    expect_err(stale, "update with a stale etag", is_precondition_failed);
    assert_eq!(store.instance_by_scope(&created.id_scope).await.unwrap(), Some(updated.clone()), "not applied");

    let missing = Instance { id_scope: scope(), ..created.clone() };
    expect_err(
        store.update_instance(missing, Precondition::Matches("\"x\"".into())).await,
        "update of an unknown instance",
        is_not_found,
    );
}

/// Every instance is listed, by ID scope.
pub async fn instance_list(store: Arc<dyn Store>) {
    let mut mine = Vec::new();
    for _ in 0..4 {
        mine.push(store.create_instance(sample_instance(&scope())).await.unwrap());
    }
    let listed = store.list_instances().await.unwrap();
    let listed_mine: Vec<&Instance> = listed.iter().filter(|i| mine.iter().any(|m| m.id_scope == i.id_scope)).collect();
    mine.sort_by_key(|i| key(&i.id_scope));
    assert_eq!(listed_mine, mine.iter().collect::<Vec<_>>(), "all of them, in scope order");
    let keys: Vec<String> = listed.iter().map(|i| key(&i.id_scope)).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "listed in ascending scope order: {keys:?}");
}
