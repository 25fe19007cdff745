//! The round-trip budget, counted with an SDK interceptor while driving the real use cases: a first-time
//! registration with warm caches makes two sequential DynamoDB calls, a re-registration two, a status poll one.
//! Also prints the calls of every other operation (`--nocapture` shows the table; docs/dynamodb.md has it).

mod support;

use dps_core::model::{EnrollmentGroup, IndividualEnrollment, RegistrationStatus};
use dps_core::store::{EnrollmentStore, PageRequest, Precondition, Store};
use support::DpsEnv;

fn page() -> PageRequest {
    PageRequest { max_items: 100, continuation: None }
}

fn calls(ops: &[String]) -> Vec<&str> {
    ops.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn registration_round_trips_with_warm_caches() {
    let env = DpsEnv::new().await;
    let warm_key = env.enroll("warm-up").await;
    let key = env.enroll("dev-1").await;
    env.register("warm-up", &warm_key).await.expect("warm-up registration loads the instance into the cache");

    env.log.reset();
    let first = env.register("dev-1", &key).await.expect("first registration");
    assert_eq!(first.status, RegistrationStatus::Assigned);
    assert_eq!(calls(&env.log.operations()), ["BatchGetItem", "TransactWriteItems"], "first-time registration");
    assert_eq!(env.log.attempts().len(), 2, "no retries");

    env.log.reset();
    let again = env.register("dev-1", &key).await.expect("re-registration");
    assert_eq!(calls(&env.log.operations()), ["BatchGetItem", "TransactWriteItems"], "re-registration");

    env.log.reset();
    let polled = env.status("dev-1", &key, None).await.expect("status");
    assert_eq!(polled, again);
    assert_eq!(calls(&env.log.operations()), ["BatchGetItem"], "registration status poll");

    env.log.reset();
    env.status("dev-1", &key, Some(&again.operation_id)).await.expect("operation status");
    assert_eq!(calls(&env.log.operations()), ["BatchGetItem"], "operation status poll");
    assert_eq!(env.counted().await, (2, 1), "warm-up and dev-1 registered, dev-1 re-registered");
}

#[tokio::test]
async fn group_registration_round_trips_with_warm_caches() {
    let env = DpsEnv::new().await;
    let group_key = env.enroll_group("line-1").await;
    env.register_in_group("sensor-0", &group_key).await.expect("warm-up loads instance and groups");

    env.log.reset();
    let record = env.register_in_group("sensor-1", &group_key).await.expect("first registration");
    assert_eq!(record.enrollment_group_id.as_deref(), Some("line-1"));
    assert_eq!(calls(&env.log.operations()), ["BatchGetItem", "TransactWriteItems"], "first-time group registration");

    env.log.reset();
    let derived = dps_core::sas::derive_device_key(&group_key, "sensor-1").unwrap();
    env.status("sensor-1", &derived, None).await.expect("status");
    assert_eq!(calls(&env.log.operations()), ["BatchGetItem"], "group device status poll");

    env.log.reset();
    let listed = env.store.query_registrations(&env.scope, "line-1", page()).await.unwrap();
    assert_eq!(listed.items.len(), 2);
}

/// Calls per operation, as measured: printed as the table in docs/dynamodb.md, and pinned so that a change
/// in the numbers is a conscious one.
#[tokio::test]
async fn calls_per_operation() {
    let env = DpsEnv::new().await;
    let mut table: Vec<(String, Vec<String>)> = Vec::new();
    let mut measure = |name: &str, log: &support::CallLog| {
        table.push((name.to_string(), log.operations()));
        log.reset();
    };
    let (s, scope, log) = (env.store.as_ref(), env.scope.as_str(), &env.log);
    let group_key = env.enroll_group("line-1").await;
    let warm_key = env.enroll("warm-up").await;
    env.register("warm-up", &warm_key).await.unwrap();
    env.register_in_group("sensor-0", &group_key).await.unwrap();
    log.reset();

    let key = env.enroll("dev-1").await;
    measure("service API: create or replace an enrollment (Dps::put_enrollment)", log);
    env.dps.get_enrollment::<IndividualEnrollment>(&env.caller, "dev-1").await.unwrap();
    measure("service API: get an enrollment (Dps::get_enrollment)", log);
    env.dps.query_enrollments::<IndividualEnrollment>(&env.caller, "*", page()).await.unwrap();
    measure("service API: query enrollments, one page (Dps::query_enrollments)", log);
    let first = env.register("dev-1", &key).await.unwrap();
    measure("device: first-time registration, warm caches", log);
    env.register("dev-1", &key).await.unwrap();
    measure("device: re-registration", log);
    env.status("dev-1", &key, Some(&first.operation_id)).await.unwrap_err();
    measure("device: operation status poll (stale operation ID)", log);
    env.status("dev-1", &key, None).await.unwrap();
    measure("device: registration status poll", log);
    env.register_in_group("sensor-1", &group_key).await.unwrap();
    measure("device: first-time group registration, warm caches", log);

    let enrollment = s.load::<IndividualEnrollment>(scope, "dev-1").await.unwrap().unwrap();
    measure("store: get_enrollment", log);
    s.save(scope, enrollment.clone(), Precondition::Matches(enrollment.spec.etag.clone().unwrap())).await.unwrap();
    measure("store: put_enrollment", log);
    s.page::<IndividualEnrollment>(scope, page()).await.unwrap();
    measure("store: query_enrollments (one page)", log);
    s.page::<EnrollmentGroup>(scope, page()).await.unwrap();
    measure("store: query_groups (one page)", log);
    s.query_registrations(scope, "line-1", page()).await.unwrap();
    measure("store: query_registrations (one page)", log);
    s.device_context(scope, "dev-1").await.unwrap();
    measure("store: device_context", log);
    s.instance_by_host(&env.caller.instance.service_host_name).await.unwrap();
    measure("store: instance_by_host", log);
    let today = dps_core::usecases::today();
    s.operations(scope, &today, &today).await.unwrap();
    measure("store: operations (any date range)", log);
    s.remove::<IndividualEnrollment>(scope, "dev-1", Precondition::None).await.unwrap();
    measure("store: delete_enrollment", log);

    println!("\n| operation | DynamoDB calls | which |\n|---|---|---|");
    for (name, ops) in &table {
        println!("| {name} | {} | {} |", ops.len(), summarize(ops));
    }
    let count = |name: &str| table.iter().find(|(n, _)| n.starts_with(name)).map(|(_, ops)| ops.len()).unwrap();
    assert_eq!(count("device: first-time registration"), 2);
    assert_eq!(count("device: re-registration"), 2);
    assert_eq!(count("device: registration status poll"), 1);
    assert_eq!(count("device: first-time group registration"), 2);
    assert_eq!(count("store: get_enrollment"), 1);
    assert_eq!(count("store: put_enrollment"), 1);
    // A service API write is counted in its own write's transaction: a read, then one TransactWriteItems.
    let put = table.iter().find(|(n, _)| n.starts_with("service API: create or replace")).map(|(_, o)| o).unwrap();
    assert_eq!(put.as_slice(), ["GetItem", "TransactWriteItems"], "{put:?}");
    assert_eq!(count("store: query_enrollments"), dps_store_dynamodb::layout::ENROLLMENT_SHARDS as usize);
    assert_eq!(count("store: query_groups"), 1);
    assert_eq!(count("store: query_registrations"), dps_store_dynamodb::layout::REGISTRATION_SHARDS as usize);
    assert_eq!(count("store: operations"), dps_store_dynamodb::layout::COUNTER_SHARDS as usize);
}

/// "Query, TransactWriteItems" / "4 × Query (concurrent)".
fn summarize(ops: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < ops.len() {
        let run = ops[i..].iter().take_while(|o| **o == ops[i]).count();
        out.push(if run > 1 { format!("{run} × {} (concurrent)", ops[i]) } else { ops[i].clone() });
        i += run;
    }
    out.join(", ")
}
