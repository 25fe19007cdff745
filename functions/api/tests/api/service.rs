//! The service API: enrollments, groups, registration records, paging, bulk, rights, isolation.

use axum::http::Method;
use dps_core::sas;
use serde_json::{Value, json};

use crate::common::*;

fn enrollment(id: &str) -> Value {
    json!({ "registrationId": id, "attestation": { "type": "symmetricKey" } })
}

#[tokio::test]
async fn individual_enrollment_lifecycle() {
    let h = Harness::new().await;
    let got = h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").json(&enrollment("dev-1"))).await;
    got.assert_ok(200);
    let created = got.body.clone();
    assert_eq!(created["registrationId"], "dev-1");
    assert_eq!(created["attestation"]["type"], "symmetricKey");
    assert_eq!(created["attestation"]["symmetricKey"], json!({}), "keys are stripped");
    assert_eq!(created["provisioningStatus"], "enabled");
    assert!(created["etag"].is_string() && created["createdDateTimeUtc"].is_string());

    let got = h.send(h.service(&h.a, Method::GET, "/enrollments/DEV-1")).await;
    got.assert_ok(200);
    assert_eq!(got.body["etag"], created["etag"]);
    assert_eq!(got.body["attestation"]["symmetricKey"], json!({}));

    let got = h.send(h.service(&h.a, Method::POST, "/enrollments/dev-1/attestationmechanism")).await;
    got.assert_ok(200);
    let primary = got.body["symmetricKey"]["primaryKey"].as_str().unwrap().to_string();
    assert!(got.body["symmetricKey"]["secondaryKey"].is_string());

    // The SDK sends back what it read (read-only fields included) with If-Match: accepted, keys kept.
    let mut update = got_body_with(&created, "deviceId", json!("device-one"));
    update["registrationState"] = json!({ "registrationId": "dev-1", "status": "assigned" });
    let etag = created["etag"].as_str().unwrap().to_string();
    let got =
        h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").header("if-match", etag.clone()).json(&update)).await;
    got.assert_ok(200);
    assert_eq!(got.body["deviceId"], "device-one");
    assert_ne!(got.body["etag"], created["etag"]);
    assert_eq!(h.attestation_key(&h.a, "enrollments", "dev-1").await, primary);

    // Stale etag: 412 on PUT and DELETE, nothing changed.
    let stale = got_body_with(&created, "deviceId", json!("device-two"));
    h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").header("if-match", etag.clone()).json(&stale))
        .await
        .assert_error(412, 412001);
    h.send(h.service(&h.a, Method::DELETE, "/enrollments/dev-1").header("if-match", etag.clone()))
        .await
        .assert_error(412, 412001);
    let got = h.send(h.service(&h.a, Method::GET, "/enrollments/dev-1")).await;
    assert_eq!(got.body["deviceId"], "device-one");

    let current = got.body["etag"].as_str().unwrap().to_string();
    h.send(h.service(&h.a, Method::DELETE, "/enrollments/dev-1").header("if-match", current)).await.assert_ok(204);
    h.send(h.service(&h.a, Method::GET, "/enrollments/dev-1")).await.assert_error(404, 404001);
    h.send(h.service(&h.a, Method::DELETE, "/enrollments/dev-1")).await.assert_error(404, 404001);
}

fn got_body_with(body: &Value, field: &str, value: Value) -> Value {
    let mut b = body.clone();
    b[field] = value;
    b
}

#[tokio::test]
async fn enrollment_bodies_are_validated() {
    let h = Harness::new().await;
    let put = |id: &str| h.service(&h.a, Method::PUT, &format!("/enrollments/{id}"));
    h.send(put("dev-1").json(&enrollment("dev-2"))).await.assert_error(400, 400004);
    h.send(put("dev.").json(&enrollment("dev."))).await.assert_error(400, 400004);
    h.send(put("dev-1").json(&json!({ "registrationId": "dev-1" }))).await.assert_error(400, 400002);
    h.send(put("dev-1").raw("not json", "application/json")).await.assert_error(400, 400002);
    h.send(put("dev-1").raw(serde_json::to_vec(&enrollment("dev-1")).unwrap(), "application/xml"))
        .await
        .assert_error(415, 415001);
    let hub = json!({ "registrationId": "dev-1", "attestation": { "type": "symmetricKey" }, "iotHubs": ["nope.example.net"] });
    h.send(put("dev-1").json(&hub)).await.assert_error(400, 400004);
    h.send(h.service(&h.a, Method::GET, "/enrollments/dev-1")).await.assert_error(404, 404001);
}

#[tokio::test]
async fn groups_are_matched_case_insensitively_like_the_node_sdk_sends_them() {
    let h = Harness::new().await;
    let body = json!({ "enrollmentGroupId": "fleet", "attestation": { "type": "symmetricKey" } });
    let got = h.send(h.service(&h.a, Method::PUT, "/enrollmentGroups/fleet").json(&body)).await;
    got.assert_ok(200);
    assert_eq!(got.body["enrollmentGroupId"], "fleet");
    assert_eq!(got.body["attestation"]["symmetricKey"], json!({}));
    let got = h.send(h.service(&h.a, Method::POST, "/enrollmentgroups/fleet/attestationmechanism")).await;
    got.assert_ok(200);
    assert!(got.body["symmetricKey"]["primaryKey"].is_string());
    h.send(h.service(&h.a, Method::GET, "/EnrollmentGroups/fleet/")).await.assert_ok(200);
    let got = h.send(h.service(&h.a, Method::POST, "/enrollmentGroups/query").json(&json!({ "query": "*" }))).await;
    got.assert_ok(200);
    assert_eq!(got.body.as_array().unwrap().len(), 1);
    assert_eq!(got.header("x-ms-item-type"), Some("enrollmentGroup"));
    h.send(h.service(&h.a, Method::DELETE, "/enrollmentgroups/fleet")).await.assert_ok(204);
    h.send(h.service(&h.a, Method::GET, "/enrollmentGroups/fleet")).await.assert_error(404, 404001);
}

#[tokio::test]
async fn queries_page_with_continuation_headers() {
    let h = Harness::new().await;
    for i in 0..5 {
        h.send(h.service(&h.a, Method::PUT, &format!("/enrollments/dev-{i}")).json(&enrollment(&format!("dev-{i}"))))
            .await
            .assert_ok(200);
    }
    let mut seen = Vec::new();
    let mut continuation: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut call = h
            .service(&h.a, Method::POST, "/enrollments/query")
            .header("x-ms-max-item-count", "2")
            .json(&json!({ "query": "*" }));
        if let Some(c) = &continuation {
            call = call.header("x-ms-continuation", c.clone());
        }
        let got = h.send(call).await;
        got.assert_ok(200);
        pages += 1;
        assert_eq!(got.header("x-ms-item-type"), Some("enrollment"));
        assert_eq!(got.header("x-ms-max-item-count"), Some("2"));
        for item in got.body.as_array().unwrap() {
            assert_eq!(item["attestation"]["symmetricKey"], json!({}), "no keys in queries");
            seen.push(item["registrationId"].as_str().unwrap().to_string());
        }
        match got.header("x-ms-continuation") {
            Some(c) => {
                assert!(!c.is_empty(), "never an empty continuation");
                continuation = Some(c.to_string());
            }
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(seen, ["dev-0", "dev-1", "dev-2", "dev-3", "dev-4"]);
    assert_eq!(pages, 3);
    // Without a body or page size: everything, default page size echoed.
    let got = h.send(h.service(&h.a, Method::POST, "/enrollments/query")).await;
    assert_eq!(got.body.as_array().unwrap().len(), 5);
    assert!(got.header("x-ms-continuation").is_none());
    let got = h.send(h.service(&h.a, Method::POST, "/enrollments/query").header("x-ms-max-item-count", "many")).await;
    got.assert_error(400, 400004);
    let got = h
        .send(h.service(&h.a, Method::POST, "/enrollments/query").json(&json!({ "query": "SELECT * FROM x WHERE 1" })))
        .await;
    got.assert_error(400, 400004);
}

#[tokio::test]
async fn bulk_operations_commit_good_items_and_list_bad_ones() {
    let h = Harness::new().await;
    h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-0").json(&enrollment("dev-0"))).await.assert_ok(200);
    let body =
        json!({ "mode": "create", "enrollments": [enrollment("dev-0"), enrollment("dev-1"), enrollment("dev-2")] });
    // The Node SDK posts to "/enrollments/" (trailing slash).
    let got = h.send(h.service(&h.a, Method::POST, "/enrollments/").json(&body)).await;
    got.assert_ok(200);
    assert_eq!(got.body["isSuccessful"], false);
    assert_eq!(
        got.body["errors"],
        json!([{ "registrationId": "dev-0", "errorCode": 409001, "errorStatus": got.body["errors"][0]["errorStatus"] }])
    );
    h.send(h.service(&h.a, Method::GET, "/enrollments/dev-2")).await.assert_ok(200);

    let delete =
        json!({ "mode": "delete", "enrollments": [{ "registrationId": "dev-1" }, { "registrationId": "dev-2" }] });
    let got = h.send(h.service(&h.a, Method::POST, "/enrollments").json(&delete)).await;
    got.assert_ok(200);
    assert_eq!(got.body, json!({ "isSuccessful": true, "errors": [] }));
    h.send(h.service(&h.a, Method::GET, "/enrollments/dev-1")).await.assert_error(404, 404001);

    // Malformed as a whole: duplicates, too many, unknown mode.
    let dup = json!({ "mode": "create", "enrollments": [enrollment("dev-5"), enrollment("DEV-5")] });
    h.send(h.service(&h.a, Method::POST, "/enrollments").json(&dup)).await.assert_error(400, 400004);
    let many: Vec<Value> = (0..11).map(|i| enrollment(&format!("d-{i}"))).collect();
    h.send(h.service(&h.a, Method::POST, "/enrollments").json(&json!({ "mode": "create", "enrollments": many })))
        .await
        .assert_error(400, 400004);
    h.send(h.service(&h.a, Method::POST, "/enrollments").json(&json!({ "mode": "merge", "enrollments": [] })))
        .await
        .assert_error(400, 400002);
    h.send(h.service(&h.a, Method::GET, "/enrollments/dev-5")).await.assert_error(404, 404001);

    let groups = json!({ "mode": "create", "enrollmentGroups": [
        { "enrollmentGroupId": "g1", "attestation": { "type": "symmetricKey" } },
        { "enrollmentGroupId": "g2", "attestation": { "type": "tpm", "tpm": { "endorsementKey": "AAAA" } } } ] });
    let got = h.send(h.service(&h.a, Method::POST, "/enrollmentGroups/").json(&groups)).await;
    got.assert_ok(200);
    assert_eq!(got.body["isSuccessful"], false);
    assert_eq!(got.body["errors"][0]["enrollmentGroupId"], "g2");
    assert_eq!(got.body["errors"][0]["errorCode"], 400004);
}

#[tokio::test]
async fn registration_records_read_delete_and_query_per_group() {
    let h = Harness::new().await;
    let group_key = h.enroll_group(&h.a, "fleet").await;
    for i in 0..3 {
        let id = format!("s-{i}");
        let key = sas::derive_device_key(&group_key, &id).unwrap();
        h.send(h.device(&h.a, Method::PUT, "/register", &id, &key)).await.assert_ok(202);
    }
    let got = h.send(h.service(&h.a, Method::GET, "/registrations/s-0")).await;
    got.assert_ok(200);
    assert_eq!(got.body["registrationId"], "s-0");
    assert_eq!(got.body["assignedHub"], h.a.hub);
    assert_eq!(got.body["status"], "assigned");
    assert!(got.body.get("operationId").is_none() && got.body.get("attestationType").is_none());
    let etag = got.body["etag"].as_str().unwrap().to_string();

    let got = h
        .send(
            h.service(&h.a, Method::POST, "/registrations/fleet/query")
                .header("x-ms-max-item-count", "2")
                .json(&json!({ "query": "*" })),
        )
        .await;
    got.assert_ok(200);
    assert_eq!(got.body.as_array().unwrap().len(), 2);
    assert_eq!(got.header("x-ms-item-type"), Some("deviceRegistration"));
    let next = got.header("x-ms-continuation").unwrap().to_string();
    let got = h
        .send(
            h.service(&h.a, Method::POST, "/registrations/fleet/query")
                .header("x-ms-max-item-count", "2")
                .header("x-ms-continuation", next),
        )
        .await;
    assert_eq!(got.body.as_array().unwrap().len(), 1);
    assert!(got.header("x-ms-continuation").is_none());

    h.send(h.service(&h.a, Method::DELETE, "/registrations/s-0").header("if-match", "\"stale\""))
        .await
        .assert_error(412, 412001);
    h.send(h.service(&h.a, Method::GET, "/registrations/s-0")).await.assert_ok(200);
    h.send(h.service(&h.a, Method::DELETE, "/registrations/s-0").header("if-match", etag)).await.assert_ok(204);
    h.send(h.service(&h.a, Method::GET, "/registrations/s-0")).await.assert_error(404, 404001);
}

#[tokio::test]
async fn service_tokens_are_checked() {
    let h = Harness::new().await;
    h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").json(&enrollment("dev-1"))).await.assert_ok(200);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let owner = "provisioningserviceowner";
    let uri = format!("/enrollments/dev-1?api-version={V}");
    let forged = sas::token(&h.a.host, &sas::generate_key(), in_an_hour(), Some(owner)).unwrap();
    let cases = [
        ("expired", sas::token(&h.a.host, &h.a.owner_key, now - 1, Some(owner)).unwrap()),
        ("forged", forged),
        ("other host", sas::token(&h.b.host, &h.a.owner_key, in_an_hour(), Some(owner)).unwrap()),
        ("unknown policy", sas::token(&h.a.host, &h.a.owner_key, in_an_hour(), Some("nobody")).unwrap()),
        ("no skn", sas::token(&h.a.host, &h.a.owner_key, in_an_hour(), None).unwrap()),
    ];
    for (what, token) in cases {
        let got = h
            .send(
                Call::new(Method::DELETE, uri.clone()).header("host", h.a.host.clone()).header("authorization", token),
            )
            .await;
        assert_eq!(got.status.as_u16(), 401, "{what}");
        got.assert_error(401, 401002);
    }
    h.send(Call::new(Method::DELETE, uri.clone()).header("host", h.a.host.clone())).await.assert_error(401, 401002);
    // Unknown host: no instance, answered as a bad token is (hosts cannot be enumerated).
    let token = sas::token("nowhere.test", &h.a.owner_key, in_an_hour(), Some(owner)).unwrap();
    h.send(Call::new(Method::GET, uri.clone()).header("host", "nowhere.test").header("authorization", token))
        .await
        .assert_error(401, 401002);
    // Missing api-version.
    h.send(h.service_as_given(&h.a, Method::GET, "/enrollments/dev-1")).await.assert_error(400, 400001);
    h.send(h.service(&h.a, Method::GET, "/enrollments/dev-1")).await.assert_ok(200);
}

#[tokio::test]
async fn a_policy_without_the_right_is_refused() {
    let h = Harness::new().await;
    let got = h
        .send(
            h.service(&h.a, Method::PUT, "/config/authorizationPolicies/reader")
                .json(&json!({ "rights": ["EnrollmentRead"] })),
        )
        .await;
    got.assert_ok(200);
    let key = got.body["primaryKey"].as_str().unwrap().to_string();
    let token = sas::token(&h.a.host, &key, in_an_hour(), Some("reader")).unwrap();
    let call = |method: Method, path: &str| {
        Call::new(method, format!("{path}?api-version={V}"))
            .header("host", h.a.host.clone())
            .header("authorization", token.clone())
    };
    h.send(call(Method::PUT, "/enrollments/dev-1").json(&enrollment("dev-1"))).await.assert_error(401, 401002);
    h.send(h.service(&h.a, Method::GET, "/enrollments/dev-1")).await.assert_error(404, 404001);
    h.send(h.service(&h.a, Method::PUT, "/enrollments/dev-1").json(&enrollment("dev-1"))).await.assert_ok(200);
    h.send(call(Method::GET, "/enrollments/dev-1")).await.assert_ok(200);
    h.send(call(Method::DELETE, "/enrollments/dev-1")).await.assert_error(401, 401002);
    h.send(call(Method::GET, "/registrations/dev-1")).await.assert_error(401, 401002);
    h.send(call(Method::GET, "/config")).await.assert_error(401, 401002);
    h.send(h.service(&h.a, Method::GET, "/enrollments/dev-1")).await.assert_ok(200);
}

#[tokio::test]
async fn two_instances_on_one_store_see_nothing_of_each_other() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    h.send(h.device(&h.a, Method::PUT, "/register", "dev-1", &key)).await.assert_ok(202);
    h.enroll_group(&h.a, "fleet").await;

    for path in ["/enrollments/dev-1", "/enrollmentGroups/fleet", "/registrations/dev-1"] {
        h.send(h.service(&h.b, Method::GET, path)).await.assert_error(404, 404001);
    }
    for path in ["/enrollments/query", "/enrollmentGroups/query", "/registrations/fleet/query"] {
        let got = h.send(h.service(&h.b, Method::POST, path).json(&json!({ "query": "*" }))).await;
        got.assert_ok(200);
        assert_eq!(got.body, json!([]), "{path}");
    }
    // A's owner key against B's host, and A's device in B's scope.
    let token = sas::token(&h.b.host, &h.a.owner_key, in_an_hour(), Some("provisioningserviceowner")).unwrap();
    h.send(
        Call::new(Method::GET, format!("/enrollments/dev-1?api-version={V}"))
            .header("host", h.b.host.clone())
            .header("authorization", token),
    )
    .await
    .assert_error(401, 401002);
    h.send(h.device(&h.b, Method::PUT, "/register", "dev-1", &key)).await.assert_error(401, 401002);
    h.send(h.device(&h.b, Method::POST, "", "dev-1", &key)).await.assert_error(401, 401002);
    // B can create the same IDs without touching A's.
    h.enroll(&h.b, "dev-1").await;
    h.send(h.service(&h.b, Method::DELETE, "/enrollments/dev-1")).await.assert_ok(204);
    h.send(h.service(&h.a, Method::GET, "/enrollments/dev-1")).await.assert_ok(200);
}
