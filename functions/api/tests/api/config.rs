//! Our /config extension.

use axum::http::Method;
use dps_core::sas;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn configuration_read_and_replace_with_if_match() {
    let h = Harness::new().await;
    let got = h.send(h.service(&h.a, Method::GET, "/config")).await;
    got.assert_ok(200);
    assert_eq!(got.body["idScope"], h.a.scope);
    assert_eq!(got.body["serviceHostName"], h.a.host);
    assert_eq!(got.body["allocationPolicy"], "hashed");
    assert_eq!(got.body["linkedHubs"][0]["hostName"], h.a.hub);
    assert!(got.body.get("authorizationPolicies").is_none() && got.body.get("webhookSigningKey").is_none());
    let etag = got.body["etag"].as_str().unwrap().to_string();

    let mut change = got.body.clone();
    change["allocationPolicy"] = json!("geoLatency");
    h.send(h.service(&h.a, Method::PUT, "/config").header("if-match", "\"stale\"").json(&change))
        .await
        .assert_error(412, 412001);
    let got = h.send(h.service(&h.a, Method::PUT, "/config").header("if-match", etag).json(&change)).await;
    got.assert_ok(200);
    assert_eq!(got.body["allocationPolicy"], "geoLatency");
    change["allocationPolicy"] = json!("custom");
    h.send(h.service(&h.a, Method::PUT, "/config").json(&change)).await.assert_error(400, 400004);
    let got = h.send(h.service(&h.a, Method::GET, "/config")).await;
    assert_eq!(got.body["allocationPolicy"], "geoLatency");
    // api-version is optional here, checked when sent.
    let got = h.send(h.service_as_given(&h.a, Method::GET, "/config")).await;
    got.assert_ok(200);
    let got = h.send(h.service_as_given(&h.a, Method::GET, "/config?api-version=1999-01-01")).await;
    got.assert_error(400, 400001);
}

#[tokio::test]
async fn linked_hubs() {
    let h = Harness::new().await;
    let got = h
        .send(
            h.service(&h.a, Method::PUT, "/config/linkedHubs/hub-2.example.net")
                .json(&json!({ "allocationWeight": 5, "location": "westeurope" })),
        )
        .await;
    got.assert_ok(200);
    assert_eq!(
        got.body,
        json!({ "hostName": "hub-2.example.net", "allocationWeight": 5, "applyAllocationPolicy": true, "location": "westeurope" })
    );
    let got = h.send(h.service(&h.a, Method::GET, "/config/linkedhubs")).await;
    got.assert_ok(200);
    assert_eq!(got.body.as_array().unwrap().len(), 2);
    h.send(h.service(&h.a, Method::GET, "/config/linkedHubs/hub-2.example.net")).await.assert_ok(200);
    h.send(
        h.service(&h.a, Method::PUT, "/config/linkedHubs/hub-3.example.net")
            .json(&json!({ "hostName": "other.example.net" })),
    )
    .await
    .assert_error(400, 400004);
    h.send(h.service(&h.a, Method::PUT, "/config/linkedHubs/bad_host").json(&json!({})))
        .await
        .assert_error(400, 400004);
    h.send(
        h.service(&h.a, Method::PUT, "/config/linkedHubs/hub-3.example.net").json(&json!({ "allocationWeight": 0 })),
    )
    .await
    .assert_error(400, 400004);
    // The name is stored in lower case, whichever case the path and body use; defaults are the core's.
    let got = h
        .send(
            h.service(&h.a, Method::PUT, "/config/linkedHubs/Hub-4.Example.NET")
                .json(&json!({ "hostName": "HUB-4.example.net" })),
        )
        .await;
    got.assert_ok(200);
    assert_eq!(
        got.body,
        json!({ "hostName": "hub-4.example.net", "allocationWeight": 1, "applyAllocationPolicy": true })
    );
    let got = h.send(h.service(&h.a, Method::GET, "/config/linkedHubs/HUB-4.EXAMPLE.NET")).await;
    got.assert_ok(200);
    assert_eq!(got.body["hostName"], "hub-4.example.net");
    h.send(h.service(&h.a, Method::GET, "/config/linkedHubs/hub-9.example.net")).await.assert_error(404, 404001);
    h.send(h.service(&h.a, Method::PUT, "/config/linkedHubs/hub-5.example.net").json(&json!(["x"])))
        .await
        .assert_error(400, 400002);
    // A field sent as null counts as absent.
    let got = h
        .send(
            h.service(&h.a, Method::PUT, "/config/linkedHubs/hub-4.example.net")
                .json(&json!({ "hostName": null, "allocationWeight": null, "location": "westeurope" })),
        )
        .await;
    got.assert_ok(200);
    assert_eq!(got.body["allocationWeight"], 1);
    assert_eq!(got.body["location"], "westeurope");
    h.send(h.service(&h.a, Method::DELETE, "/config/linkedHubs/hub-4.example.net")).await.assert_ok(204);
    h.send(h.service(&h.a, Method::DELETE, "/config/linkedHubs/hub-2.example.net")).await.assert_ok(204);
    h.send(h.service(&h.a, Method::DELETE, "/config/linkedHubs/hub-2.example.net")).await.assert_error(404, 404001);
    let got = h.send(h.service(&h.a, Method::GET, "/config/linkedHubs")).await;
    assert_eq!(got.body.as_array().unwrap().len(), 1);
    // B's hubs are B's.
    let got = h.send(h.service(&h.b, Method::GET, "/config/linkedHubs")).await;
    assert_eq!(got.body, json!([{ "hostName": h.b.hub, "allocationWeight": 1, "applyAllocationPolicy": true }]));
}

#[tokio::test]
async fn authorization_policies() {
    let h = Harness::new().await;
    let got = h.send(h.service(&h.a, Method::GET, "/config/authorizationPolicies")).await;
    got.assert_ok(200);
    assert_eq!(got.body[0]["keyName"], "provisioningserviceowner");
    assert!(got.body[0].get("primaryKey").is_none(), "no keys in the list");

    let key = sas::generate_key();
    let got = h
        .send(
            h.service(&h.a, Method::PUT, "/config/authorizationPolicies/ops")
                .json(&json!({ "rights": ["RegistrationStatusRead"], "primaryKey": key })),
        )
        .await;
    got.assert_ok(200);
    assert_eq!(got.body["keyName"], "ops");
    assert_eq!(got.body["primaryKey"], key);
    assert!(got.body["secondaryKey"].as_str().is_some_and(|k| !k.is_empty()));
    let got = h.send(h.service(&h.a, Method::GET, "/config/authorizationPolicies/ops")).await;
    assert_eq!(got.body["primaryKey"], key);
    assert_eq!(got.body["rights"], json!(["RegistrationStatusRead"]));

    h.send(
        h.service(&h.a, Method::PUT, "/config/authorizationPolicies/ops").json(&json!({ "rights": ["Everything"] })),
    )
    .await
    .assert_error(400, 400002);
    h.send(
        h.service(&h.a, Method::PUT, "/config/authorizationPolicies/ops")
            .json(&json!({ "rights": [], "primaryKey": "c2hvcnQ=" })),
    )
    .await
    .assert_error(400, 400004);
    h.send(h.service(&h.a, Method::DELETE, "/config/authorizationPolicies/ops")).await.assert_ok(204);
    h.send(h.service(&h.a, Method::GET, "/config/authorizationPolicies/ops")).await.assert_error(404, 404001);
    // The last ServiceConfig policy stays.
    h.send(h.service(&h.a, Method::DELETE, "/config/authorizationPolicies/provisioningserviceowner"))
        .await
        .assert_error(409, 409001);
}

#[tokio::test]
async fn operations_are_counted_per_day() {
    let h = Harness::new().await;
    let key = h.enroll(&h.a, "dev-1").await;
    h.send(h.device(&h.a, Method::PUT, "/register", "dev-1", &key)).await.assert_ok(202);
    let got = h.send(h.service(&h.a, Method::GET, "/config/operations")).await;
    got.assert_ok(200);
    let today = dps_core::usecases::today();
    let rows = got.body.as_array().unwrap();
    let count =
        |kind: &str| rows.iter().find(|r| r["kind"] == kind && r["date"] == today.as_str()).map(|r| r["count"].clone());
    assert_eq!(count("registration"), Some(json!(1)));
    assert!(count("serviceOperation").is_some());
    let got = h.send(h.service(&h.a, Method::GET, "/config/operations?from=2000-01-01&to=2000-01-02")).await;
    got.assert_ok(200);
    assert_eq!(got.body, json!([]));
    h.send(h.service(&h.a, Method::GET, "/config/operations?from=yesterday")).await.assert_error(400, 400004);
    // B counted nothing.
    let got = h.send(h.service(&h.b, Method::GET, "/config/operations")).await;
    assert!(got.body.as_array().unwrap().iter().all(|r| r["kind"] != "registration"));
}
