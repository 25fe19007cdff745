//! Faults: a registration interrupted between its DynamoDB calls leaves consistent records and a retry by the
//! device succeeds; throttling surfaces as `Error::Throttled` only after the retries are exhausted.
//! Faults are injected at the HTTP layer (see support/faults.rs): the failed attempts never reach the server.

mod support;

use dps_core::Error;
use dps_core::model::{IndividualEnrollment, RegistrationStatus};
use dps_core::store::{EnrollmentStore, Store};
use support::{DpsEnv, Fault, MAX_ATTEMPTS};

const ATTEMPTS: usize = MAX_ATTEMPTS as usize;

/// A device enrolled, with instance and groups warm in the cache (another device registered).
async fn warm_env() -> (DpsEnv, String) {
    let env = DpsEnv::new().await;
    let warm_key = env.enroll("warm-up").await;
    let key = env.enroll("dev-1").await;
    env.register("warm-up", &warm_key).await.unwrap();
    env.log.reset();
    (env, key)
}

/// A first registration whose DynamoDB call number `call` fails on every attempt: the device gets 503, the
/// calls made are `attempts`, nothing is recorded or counted, and the device's retry is assigned and counted once.
async fn interrupted_first_registration(call: usize, attempts: Vec<String>) {
    let (env, key) = warm_env().await;
    env.faults.fail(call, ATTEMPTS, Fault::ServerError);
    let failed = env.register("dev-1", &key).await;
    assert!(matches!(failed, Err(Error::Unavailable(_))), "{failed:?}");
    assert_eq!(env.log.attempts(), attempts, "the failed call was retried, then given up");

    assert_eq!(env.store.get_registration(&env.scope, "dev-1").await.unwrap(), None, "no record");
    assert_eq!(env.counted().await, (1, 0), "only the warm-up device is counted");
    let retried = env.register("dev-1", &key).await.expect("the device's retry");
    assert_eq!(retried.status, RegistrationStatus::Assigned);
    assert_eq!(env.store.get_registration(&env.scope, "dev-1").await.unwrap(), Some(retried));
    assert_eq!(env.counted().await, (2, 0), "counted once");
}

#[tokio::test]
async fn registration_interrupted_before_its_read_leaves_nothing_and_a_retry_succeeds() {
    interrupted_first_registration(1, vec!["BatchGetItem".to_string(); ATTEMPTS]).await;
}

#[tokio::test]
async fn registration_interrupted_before_its_write_leaves_nothing_and_a_retry_succeeds() {
    // Call 1 is the device context read; the write's attempts all fail (the count is in that write).
    let mut attempts = vec!["BatchGetItem".to_string()];
    attempts.extend(vec!["TransactWriteItems".to_string(); ATTEMPTS]);
    interrupted_first_registration(2, attempts).await;
}

#[tokio::test]
async fn interrupted_reregistration_keeps_the_previous_record() {
    let (env, key) = warm_env().await;
    let first = env.register("dev-1", &key).await.unwrap();
    env.log.reset();
    env.faults.fail(2, ATTEMPTS, Fault::ServerError);
    assert!(matches!(env.register("dev-1", &key).await, Err(Error::Unavailable(_))));
    let stored = env.store.get_registration(&env.scope, "dev-1").await.unwrap();
    assert_eq!(stored, Some(first.clone()), "the previous record, with its etag, is untouched");
    assert_eq!(env.counted().await, (2, 0));

    let again = env.register("dev-1", &key).await.expect("the device's retry");
    assert_ne!(again.etag, first.etag);
    assert_eq!(again.operation_id, env.status("dev-1", &key, None).await.unwrap().operation_id);
    assert_eq!(env.counted().await, (2, 1), "one re-registration");
}

/// The write is applied but its response is lost. On DynamoDB the SDK's retry carries the same
/// ClientRequestToken and is answered as a success; moto ignores the token, so the retry fails its condition and
/// `Dps::register` reads the record again and writes it once more as a re-registration. Either way the device
/// gets an answer that matches the stored record, and its first registration is counted exactly once.
#[tokio::test]
async fn a_lost_write_response_leaves_a_consistent_record() {
    let (env, key) = warm_env().await;
    env.faults.fail(2, 1, Fault::LoseResponse);
    let record = env.register("dev-1", &key).await.expect("the device gets its answer");
    assert_eq!(record.status, RegistrationStatus::Assigned);
    assert_eq!(env.store.get_registration(&env.scope, "dev-1").await.unwrap(), Some(record.clone()));
    assert_eq!(env.status("dev-1", &key, Some(&record.operation_id)).await.unwrap(), record);
    let (registrations, reregistrations) = env.counted().await;
    assert_eq!(registrations, 2, "warm-up and dev-1, once each");
    assert!(reregistrations <= 1, "at most the replay's re-registration (moto only)");
}

#[tokio::test]
async fn transient_faults_within_the_retry_budget_are_invisible() {
    let (env, key) = warm_env().await;
    env.faults.fail(1, ATTEMPTS - 1, Fault::ServerError);
    env.faults.fail(ATTEMPTS + 1, ATTEMPTS - 1, Fault::Throttle);
    let record = env.register("dev-1", &key).await.expect("retried to success");
    assert_eq!(record.status, RegistrationStatus::Assigned);
    assert_eq!(env.log.operations(), ["BatchGetItem", "TransactWriteItems"], "still two calls");
    assert_eq!(env.log.attempts().len(), 2 * ATTEMPTS, "each call took all its attempts");
    assert_eq!(env.counted().await, (2, 0), "counted once");
}

#[tokio::test]
async fn throttling_surfaces_only_after_retries_are_exhausted() {
    let (env, key) = warm_env().await;
    env.faults.fail_all(Fault::Throttle);
    let throttled = env.store.load::<IndividualEnrollment>(&env.scope, "dev-1").await;
    assert!(matches!(throttled, Err(Error::Throttled { retry_after_secs: 1, .. })), "{throttled:?}");
    assert_eq!(env.log.attempts(), vec!["GetItem".to_string(); ATTEMPTS], "one call, every attempt throttled");

    env.log.reset();
    let register = env.register("dev-1", &key).await;
    assert!(matches!(register, Err(Error::Throttled { .. })), "a throttled registration: {register:?}");
    assert_eq!(env.log.attempts().len(), ATTEMPTS);

    env.faults.heal();
    env.faults.fail(1, ATTEMPTS - 1, Fault::Throttle);
    env.log.reset();
    assert!(
        env.store.load::<IndividualEnrollment>(&env.scope, "dev-1").await.unwrap().is_some(),
        "the last attempt got through"
    );
    assert_eq!(env.log.attempts().len(), ATTEMPTS);
}

#[tokio::test]
async fn throttled_transactions_are_retried_then_surface_as_throttled() {
    let (env, key) = warm_env().await;
    // Attempt 1 reads; every attempt of the transaction is cancelled as throttled.
    env.faults.fail(2, 100, Fault::TransactionThrottled);
    let register = env.register("dev-1", &key).await;
    assert!(matches!(register, Err(Error::Throttled { .. })), "{register:?}");
    let writes = env.log.attempts().iter().filter(|o| *o == "TransactWriteItems").count();
    assert_eq!(writes, 3, "the store retries a throttled cancellation (TRANSACTION_ATTEMPTS)");
    env.faults.heal();
    assert_eq!(env.store.get_registration(&env.scope, "dev-1").await.unwrap(), None);
    env.faults.fail(2, 2, Fault::TransactionThrottled);
    env.log.reset();
    env.register("dev-1", &key).await.expect("a cancellation within the retry budget is invisible");
    assert_eq!(env.counted().await, (2, 0));
}

/// Concurrent first registrations of one device (a device retrying impatiently): the conditional writes let
/// one win and send the others through `Dps::register`'s re-read loop; every call is answered, the stored
/// record is the last one written, and exactly one first registration is counted.
#[tokio::test]
async fn concurrent_registrations_of_one_device_all_get_answers() {
    let (env, key) = warm_env().await;
    // Interleaved on the test's one thread, as spawned tasks would be.
    let answers = futures::future::join_all((0..4).map(|_| env.register("dev-1", &key))).await;
    let answers: Vec<_> = answers.into_iter().map(|a| a.expect("every concurrent registration is answered")).collect();
    let stored = env.store.get_registration(&env.scope, "dev-1").await.unwrap().unwrap();
    assert!(answers.contains(&stored), "the stored record is one of the answers");
    assert_eq!(env.counted().await, (2, 3), "one first registration (plus the warm-up), three re-registrations");
}
