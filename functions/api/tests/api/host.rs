//! The `Host` header that picks the instance must be unambiguous: one value, the same as the HTTP/2 `:authority`
//! (or an absolute request URI's authority) when both are present.

use axum::http::Method;

use crate::common::*;

#[tokio::test]
async fn two_host_headers_are_refused_not_resolved_to_the_first() {
    let h = Harness::new().await;
    // The first header names a tenant whose owner token is valid: before the check, it answered as that tenant.
    let got = h.send(h.service(&h.a, Method::GET, "/config").header("host", h.b.host.as_str())).await;
    got.assert_error(400, 400004);
    assert!(got.body["message"].as_str().unwrap().contains("Host"), "{}", got.body);
    let same_twice = h.service(&h.a, Method::GET, "/config").header("host", format!("{}:443", h.a.host));
    h.send(same_twice).await.assert_error(400, 400004);
    // The device API is behind the same check.
    let device =
        Call::new(Method::GET, format!("/{}/registrations/dev-1/operations/x?api-version={DEVICE_V}", h.a.scope))
            .header("host", "one.example")
            .header("host", "two.example");
    h.send(device).await.assert_error(400, 400004);
}

#[tokio::test]
async fn a_host_that_differs_from_the_authority_is_refused() {
    let h = Harness::new().await;
    let absolute = |authority: &str| {
        let call = h.service(&h.a, Method::GET, "/config");
        Call { uri: format!("https://{authority}{}", call.uri), ..call }
    };
    // Host names tenant a (whose token is presented), the authority names tenant b.
    let got = h.send(absolute(&h.b.host)).await;
    got.assert_error(400, 400004);
    assert_ne!(got.body["errorCode"], 401002, "refused before the instance is chosen");
    // The same entity spelled differently (case, the default port) is one host.
    h.send(absolute(&h.a.host.to_uppercase())).await.assert_ok(200);
    h.send(absolute(&format!("{}:443", h.a.host))).await.assert_ok(200);
    h.send(absolute(&format!("{}:8443", h.a.host))).await.assert_error(400, 400004);
}

#[tokio::test]
async fn one_host_or_only_an_authority_is_served() {
    let h = Harness::new().await;
    h.send(h.service(&h.a, Method::GET, "/config")).await.assert_ok(200);
    // An HTTP/2 client sends `:authority` and no Host header.
    let call = h.service(&h.a, Method::GET, "/config");
    let headers = call.headers.into_iter().filter(|(k, _)| k != "host").collect();
    let uri = format!("https://{}:443{}", h.a.host, call.uri);
    h.send(Call { uri, headers, ..call }).await.assert_ok(200);
}
