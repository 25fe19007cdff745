//! Concurrent writers: exactly one wins.

use super::*;

const RACERS: usize = 16;

/// Run `racer(i)` for `i` in `0..n`, all at once, each on a task of its own; their results in order.
async fn race<T, F>(n: usize, racer: impl Fn(usize) -> F) -> Vec<Result<T>>
where
    T: Send + 'static,
    F: Future<Output = Result<T>> + Send + 'static,
{
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(racer(i))).collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.expect("task"));
    }
    results
}

fn tally<T: Clone + Debug>(results: &[Result<T>], loser: fn(&Error) -> bool) -> T {
    let winners: Vec<&T> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one writer wins: {results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(loser(r), "losers fail with the contract's error, got {r:?}");
    }
    winners[0].clone()
}

/// 16 concurrent creates of one record: exactly one wins, the others get Conflict, one operation is counted.
pub async fn race_not_exists_one_winner(store: Arc<dyn Store>) {
    let scope = scope();
    let results = race(RACERS, |i| {
        let (store, scope) = (store.clone(), scope.clone());
        async move {
            let mut record = sample_record("racer", None);
            record.operation_id = format!("op-{i}");
            store.put_registration(&scope, record, Precondition::NotExists.counting(Some(registrations(1)))).await
        }
    })
    .await;
    let winner = tally(&results, is_conflict);
    assert_eq!(store.get_registration(&scope, "racer").await.unwrap(), Some(winner), "the winner's write is stored");
    assert_eq!(registrations_counted(store.as_ref(), &scope).await, BTreeMap::from([(OperationKind::Registration, 1)]));
}

/// 16 concurrent updates conditional on the same etag: exactly one wins, the others get PreconditionFailed.
pub async fn race_matches_one_winner(store: Arc<dyn Store>) {
    let scope = scope();
    let base = store.put_registration(&scope, sample_record("racer", None), Precondition::NotExists.into()).await;
    let etag = base.unwrap().etag.unwrap();
    let results = race(RACERS, |i| {
        let (store, scope, etag) = (store.clone(), scope.clone(), etag.clone());
        async move {
            let mut record = sample_record("racer", None);
            record.operation_id = format!("op-{i}");
            let re = OperationCount { date: "2024-05-01".into(), kind: OperationKind::ReRegistration, count: 1 };
            store.put_registration(&scope, record, Precondition::Matches(etag).counting(Some(re))).await
        }
    })
    .await;
    let winner = tally(&results, is_precondition_failed);
    let stored = store.get_registration(&scope, "racer").await.unwrap().unwrap();
    assert_eq!(stored.operation_id, winner.operation_id, "the winner's write is the one stored");
    assert_eq!(stored.etag, winner.etag, "with the etag the winner was given");
    assert_eq!(
        registrations_counted(store.as_ref(), &scope).await,
        BTreeMap::from([(OperationKind::ReRegistration, 1)])
    );
}

/// 16 concurrent creates of one group: exactly one wins, the others get Conflict.
pub async fn race_group_create_one_winner(store: Arc<dyn Store>) {
    let scope = scope();
    let results = race(RACERS, |i| {
        let (store, scope) = (store.clone(), scope.clone());
        async move {
            let group = EnrollmentGroup::make(if i % 2 == 0 { "Racers" } else { "racers" }, &i.to_string());
            store.save(&scope, group, Precondition::NotExists).await
        }
    })
    .await;
    let winner = tally(&results, is_conflict);
    assert_eq!(store.load::<EnrollmentGroup>(&scope, "RACERS").await.unwrap(), Some(winner));
}

/// 50 concurrent increments add up exactly.
pub async fn concurrent_operation_counts_are_exact(store: Arc<dyn Store>) {
    let scope = scope();
    let results = race(50, |i| {
        let (store, scope) = (store.clone(), scope.clone());
        async move { store.add_operations(&scope, "2024-05-01", OperationKind::ServiceOperation, i as u64 + 1).await }
    })
    .await;
    for r in results {
        r.expect("add_operations");
    }
    let counts = nonzero(store.operations(&scope, "2024-05-01", "2024-05-01").await.unwrap());
    assert_eq!(counts, vec![("2024-05-01".to_string(), OperationKind::ServiceOperation, 50 * 51 / 2)]);
}
