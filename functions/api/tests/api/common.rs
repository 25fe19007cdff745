//! Test harness: two instances on one real embedded store, requests through the routers with `oneshot`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use dps_core::testing::{self, OWNER, service_token};
use dps_core::{Dps, Settings};
use dps_store_embedded::EmbeddedStore;

pub use dps_core::testing::{device_token, in_an_hour};
use serde_json::Value;
use tower::ServiceExt;

pub const V: &str = "2021-10-01";
pub const DEVICE_V: &str = "2019-03-31";

/// One provisioning service instance as a test sees it.
#[derive(Clone, Debug)]
pub struct Tenant {
    pub scope: String,
    pub host: String,
    pub owner_key: String,
    pub hub: String,
}

pub struct Harness {
    pub dps: Dps,
    pub app: Router,
    pub a: Tenant,
    pub b: Tenant,
    /// Where the policy allocator (if any) keeps modules and metadata.
    pub policy_dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A response, its body parsed as JSON (Null when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Assert an Azure error answer: status, errorCode, trackingId = x-ms-request-id, JSON content type.
    pub fn assert_error(&self, status: u16, code: u32) -> &Self {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.body);
        assert_eq!(self.body["errorCode"], code, "errorCode; body: {}", self.body);
        let tracking = self.header("x-ms-request-id").expect("x-ms-request-id");
        assert_eq!(self.body["trackingId"], tracking);
        assert!(uuid::Uuid::parse_str(tracking).is_ok());
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(self.body["timestampUtc"].as_str().is_some_and(|t| t.ends_with('Z')));
        assert_eq!(self.header("x-ms-error-code"), Some(code.to_string().as_str()));
        assert_eq!(self.header("content-type"), Some("application/json; charset=utf-8"));
        self
    }

    /// Assert a successful JSON answer.
    pub fn assert_ok(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "status; body: {}", self.body);
        assert!(self.header("x-ms-request-id").is_some());
        if !self.raw.is_empty() {
            assert_eq!(self.header("content-type"), Some("application/json; charset=utf-8"));
        }
        self
    }
}

/// A request under construction.
pub struct Call {
    pub method: Method,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub content_length: bool,
}

impl Call {
    pub fn new(method: Method, uri: impl Into<String>) -> Self {
        Self { method, uri: uri.into(), headers: Vec::new(), body: Vec::new(), content_length: true }
    }
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
    pub fn json(self, body: &Value) -> Self {
        self.raw(serde_json::to_vec(body).unwrap(), "application/json; charset=utf-8")
    }
    pub fn raw(mut self, body: impl Into<Vec<u8>>, content_type: &str) -> Self {
        self.body = body.into();
        if !content_type.is_empty() {
            self.headers.push(("content-type".into(), content_type.into()));
        }
        self
    }
    /// Send the body without a Content-Length (as a chunked client would).
    pub fn without_length(mut self) -> Self {
        self.content_length = false;
        self
    }
    pub async fn send(self, router: &Router) -> Answer {
        let mut req = Request::builder().method(self.method).uri(self.uri);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        if self.content_length {
            req = req.header("content-length", self.body.len());
        }
        let req = req.body(Body::from(self.body)).unwrap();
        let res = router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let raw = axum::body::to_bytes(res.into_body(), usize::MAX).await.unwrap().to_vec();
        let body = if raw.is_empty() { Value::Null } else { serde_json::from_slice(&raw).expect("JSON body") };
        Answer { status, headers, body, raw }
    }
}

impl Harness {
    pub async fn new() -> Self {
        Self::build(false).await
    }

    /// With WebAssembly policies: a real `PolicyAllocator` over `policy_dir`, as the `dps` binary wires it.
    pub async fn with_policies() -> Self {
        Self::build(true).await
    }

    async fn build(policies: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(dir.path()).unwrap();
        let policy_dir = dir.path().join("policies");
        let mut dps = Dps::new(Arc::new(store), Settings::default());
        if policies {
            let allocator = Arc::new(
                dps_custom_allocation::PolicyAllocator::new(
                    Arc::new(dps_custom_allocation::DirStorage::new(policy_dir.clone())),
                    dps_custom_allocation::PolicySettings::default(),
                )
                .unwrap(),
            );
            dps = dps.with_allocator(allocator.clone()).with_policies(allocator);
        }
        let a = tenant(&dps, "alpha", "alpha.dps.test", "hub-a.example.net").await;
        let b = tenant(&dps, "beta", "beta.dps.test", "hub-b.example.net").await;
        let app = dps_api::app(dps.clone());
        Self { dps, app, a, b, policy_dir, _dir: dir }
    }

    /// A service API call to `tenant` signed by its owner policy.
    pub fn service(&self, tenant: &Tenant, method: Method, path: &str) -> Call {
        let sep = if path.contains('?') { '&' } else { '?' };
        Call::new(method, format!("{path}{sep}api-version={V}"))
            .header("host", format!("{}:443", tenant.host))
            .header("authorization", owner_token(tenant))
    }

    /// A service API call signed by `tenant`'s owner, with the path as given: no `api-version` added.
    pub fn service_as_given(&self, tenant: &Tenant, method: Method, path: &str) -> Call {
        Call::new(method, path).header("host", tenant.host.clone()).header("authorization", owner_token(tenant))
    }

    /// A device API call signed with `device_key` for `registration_id` in `tenant`'s scope.
    pub fn device(&self, tenant: &Tenant, method: Method, path_tail: &str, registration_id: &str, key: &str) -> Call {
        let token = device_token(&tenant.scope, registration_id, key, in_an_hour());
        Call::new(
            method,
            format!("/{}/registrations/{registration_id}{path_tail}?api-version={DEVICE_V}", tenant.scope),
        )
        .header("authorization", token)
    }

    pub async fn send(&self, call: Call) -> Answer {
        call.send(&self.app).await
    }

    /// Create a symmetric-key individual enrollment and return its primary key.
    pub async fn enroll(&self, tenant: &Tenant, registration_id: &str) -> String {
        self.enroll_symmetric(tenant, "enrollments", "registrationId", registration_id).await
    }

    /// Create a symmetric-key enrollment group and return its primary key.
    pub async fn enroll_group(&self, tenant: &Tenant, group_id: &str) -> String {
        self.enroll_symmetric(tenant, "enrollmentGroups", "enrollmentGroupId", group_id).await
    }

    async fn enroll_symmetric(&self, tenant: &Tenant, collection: &str, id_field: &str, id: &str) -> String {
        let body = serde_json::json!({ id_field: id, "attestation": { "type": "symmetricKey" } });
        self.send(self.service(tenant, Method::PUT, &format!("/{collection}/{id}")).json(&body)).await.assert_ok(200);
        self.attestation_key(tenant, collection, id).await
    }

    pub async fn attestation_key(&self, tenant: &Tenant, collection: &str, id: &str) -> String {
        let got =
            self.send(self.service(tenant, Method::POST, &format!("/{collection}/{id}/attestationmechanism"))).await;
        got.assert_ok(200);
        got.body["symmetricKey"]["primaryKey"].as_str().unwrap().to_string()
    }
}

pub fn owner_token(tenant: &Tenant) -> String {
    service_token(&tenant.host, &tenant.owner_key, OWNER)
}

async fn tenant(dps: &Dps, name: &str, host: &str, hub: &str) -> Tenant {
    let instance = testing::instance(dps, name, host, vec![testing::hub(hub)]).await;
    Tenant { owner_key: testing::owner_key(&instance), scope: instance.id_scope, host: host.into(), hub: hub.into() }
}
