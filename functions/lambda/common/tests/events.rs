//! EventBridgeSink against moto's EventBridge, routed by a rule to an SQS queue as an operator would route it:
//! each change made through the service arrives once, as `Source` dps, `DetailType` the event type and
//! `Detail` the whole CloudEvent.

use std::sync::Arc;

use aws_sdk_eventbridge::config::{Credentials, Region};
use dps_core::memory::MemoryStore;
use dps_core::model::IndividualEnrollment;
use dps_core::usecases::NewInstance;
use dps_core::{Dps, Settings};
use dps_lambda::events::EventBridgeSink;
use dps_test_support::moto_endpoint;
use serde_json::{Value, json};

fn bridge_at(endpoint: &str) -> aws_sdk_eventbridge::Client {
    let config = aws_sdk_eventbridge::config::Builder::new()
        .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .endpoint_url(endpoint)
        .http_client(dps_store_dynamodb::http_client())
        .build();
    aws_sdk_eventbridge::Client::from_conf(config)
}

fn bridge() -> aws_sdk_eventbridge::Client {
    bridge_at(&moto_endpoint())
}

fn sqs() -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::config::Builder::new()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "moto"))
        .endpoint_url(moto_endpoint())
        .http_client(dps_store_dynamodb::http_client())
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A service over the memory store with one instance, putting events through `sink`; returns it, the owner
/// caller and the instance's ID scope.
async fn service(sink: EventBridgeSink) -> (Dps, dps_core::Caller, String) {
    let dps = Dps::new(Arc::new(MemoryStore::new()), Settings::default()).with_events(Arc::new(sink));
    let new = NewInstance { name: "one".into(), service_host_name: "one.example.net".into(), id_scope: None };
    let instance = dps.create_instance(new).await.unwrap();
    let policy = &instance.authorization_policies[0];
    let expiry = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let token = dps_core::sas::token("one.example.net", &policy.primary_key, expiry, Some(&policy.key_name)).unwrap();
    let owner = dps.authenticate_service("one.example.net", "/", Some(&token)).await.unwrap();
    (dps, owner, instance.id_scope.clone())
}

fn enrollment(id: &str) -> IndividualEnrollment {
    serde_json::from_value(json!({ "registrationId": id, "attestation": { "type": "symmetricKey" } })).unwrap()
}

/// A bus whose every `dps` event a rule sends to a fresh queue; returns (bus, queue URL).
async fn routed_bus(name: &str) -> (String, String) {
    let events = bridge();
    let sqs = sqs();
    events.create_event_bus().name(name).send().await.unwrap();
    let queue = sqs.create_queue().queue_name(format!("{name}-q")).send().await.unwrap();
    let url = queue.queue_url().unwrap().to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let arn = attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    let pattern = json!({ "source": ["dps"] }).to_string();
    events.put_rule().name(format!("{name}-all")).event_bus_name(name).event_pattern(pattern).send().await.unwrap();
    let target = aws_sdk_eventbridge::types::Target::builder().id("queue").arn(arn).build().unwrap();
    events.put_targets().rule(format!("{name}-all")).event_bus_name(name).targets(target).send().await.unwrap();
    (name.to_string(), url)
}

async fn received(queue: &str, want: usize) -> Vec<Value> {
    let sqs = sqs();
    let mut got = Vec::new();
    for _ in 0..20 {
        let answer = sqs.receive_message().queue_url(queue).max_number_of_messages(10).send().await.unwrap();
        for m in answer.messages() {
            got.push(serde_json::from_str(m.body().unwrap()).unwrap());
            sqs.delete_message().queue_url(queue).receipt_handle(m.receipt_handle().unwrap()).send().await.unwrap();
        }
        if got.len() >= want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    got
}

#[tokio::test]
async fn changes_reach_a_queue_through_the_bus_once_each() {
    let (bus, queue) = routed_bus("dps-events-test").await;
    let (dps, owner, scope) = service(EventBridgeSink::new(bridge(), &bus)).await;
    dps.put_enrollment(&owner, "dev-1", enrollment("dev-1"), None).await.unwrap();
    dps.delete_enrollment::<IndividualEnrollment>(&owner, "dev-1", None).await.unwrap();

    let got = received(&queue, 2).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let kinds: Vec<&str> = got.iter().map(|m| m["detail-type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["dps.enrollment.created", "dps.enrollment.deleted"]);
    assert!(got.iter().all(|m| m["source"] == "dps"));
    let detail = &got[0]["detail"];
    assert_eq!(detail["subject"], "enrollments/dev-1");
    assert_eq!(detail["idscope"], scope);
    assert_eq!(detail["specversion"], "1.0");
    assert_eq!(detail["data"]["attestationType"], "symmetricKey");
}

#[tokio::test]
async fn an_unreachable_bus_fails_the_delivery_not_the_change() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let sink = EventBridgeSink::new(bridge_at(&format!("http://{closed}")), "dps-bus");
    use dps_core::events::EventSink;
    let err = sink.publish(&[dps_core::events::Event::registration_deleted("0ne1", "d")]).await.unwrap_err();
    assert!(err.to_string().contains("EventBridge"), "{err}");
    let (dps, owner, _) = service(EventBridgeSink::new(bridge_at(&format!("http://{closed}")), "dps-bus")).await;
    let written = dps.put_enrollment(&owner, "dev-1", enrollment("dev-1"), None).await.unwrap();
    assert!(written.spec.etag.is_some(), "the enrollment is written although its event could not be sent");
    assert!(dps.get_enrollment::<IndividualEnrollment>(&owner, "dev-1").await.is_ok());
}
