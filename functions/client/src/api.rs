//! Typed calls of the service API: the Azure routes (enrollments, groups, registration records, bulk, queries)
//! and our extensions (`/config/linkedHubs`, `/config/certificates`, `/policies`). Entities travel as JSON
//! values, exactly as the server wrote them, so that nothing a newer server adds is lost on a round trip
//! (export, then import).

use reqwest::Method;
use serde_json::{Value, json};

use crate::{Client, Error};

/// Individual enrollments or enrollment groups: the same calls under two collections (core's kind, whose
/// `collection()` and `id_field()` are the wire's words).
pub use dps_core::model::EnrollmentKind;
/// Most items one bulk call takes (Azure's limit, enforced by the server); the largest query page it serves.
pub use dps_core::usecases::{MAX_BULK_ITEMS, MAX_PAGE_SIZE};

/// The collections of our extensions that hold named JSON entities, read and deleted alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collection {
    /// `/config/linkedHubs`, keyed by host name (credentials never included).
    LinkedHubs,
    /// `/policies`, WebAssembly allocation policies as `PolicyInfo`, keyed by name.
    Policies,
    /// `/config/certificates`, CA certificates, keyed by name (deletion is refused while a group references one).
    CaCertificates,
}

impl Collection {
    /// The collection's path.
    pub fn path(self) -> &'static str {
        match self {
            Self::LinkedHubs => "config/linkedHubs",
            Self::Policies => "policies",
            Self::CaCertificates => "config/certificates",
        }
    }

    /// The path of its member `name`.
    pub fn member(self, name: &str) -> String {
        format!("{}/{}", self.path(), seg(name))
    }
}

/// Bulk operation mode, as the wire spells it (the service's own type).
pub use dps_core::usecases::BulkMode;

/// One failed item of a bulk call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkItemError {
    /// The item's ID.
    pub id: String,
    /// Azure errorCode.
    pub error_code: u64,
    /// Why.
    pub message: String,
}

/// One page of a query.
#[derive(Debug, Clone)]
pub struct Page {
    /// The entities, as JSON.
    pub items: Vec<Value>,
    /// The token for the next page; `None` on the last.
    pub continuation: Option<String>,
}

/// A path segment, percent-encoded (IDs may hold `:` and `.`; host names are plain).
fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn etag_header(etag: Option<&str>) -> Vec<(&'static str, String)> {
    etag.map(|e| vec![("if-match", e.to_string())]).unwrap_or_default()
}

impl Client {
    // ---- enrollments and groups ----

    /// Create or replace (`etag`: only if it still matches); the server's answer (without keys).
    pub async fn put_enrollment(
        &self,
        kind: EnrollmentKind,
        id: &str,
        body: &Value,
        etag: Option<&str>,
    ) -> Result<Value, Error> {
        let path = format!("{}/{}", kind.collection(), seg(id));
        Ok(self.call(Method::PUT, &path, Some(body), &etag_header(etag)).await?.body)
    }

    /// Read one (keys are never in it: see [`Client::attestation_mechanism`]).
    pub async fn get_enrollment(&self, kind: EnrollmentKind, id: &str) -> Result<Value, Error> {
        Ok(self.call(Method::GET, &format!("{}/{}", kind.collection(), seg(id)), None, &[]).await?.body)
    }

    /// Delete (`etag`: only if it still matches).
    pub async fn delete_enrollment(&self, kind: EnrollmentKind, id: &str, etag: Option<&str>) -> Result<(), Error> {
        let path = format!("{}/{}", kind.collection(), seg(id));
        self.call(Method::DELETE, &path, None, &etag_header(etag)).await.map(drop)
    }

    /// The attestation mechanism with its keys.
    pub async fn attestation_mechanism(&self, kind: EnrollmentKind, id: &str) -> Result<Value, Error> {
        let path = format!("{}/{}/attestationmechanism", kind.collection(), seg(id));
        Ok(self.call(Method::POST, &path, None, &[]).await?.body)
    }

    /// One page of the collection (`page_size` 1..=1000; `continuation` from the previous page).
    pub async fn query_enrollments(
        &self,
        kind: EnrollmentKind,
        page_size: usize,
        continuation: Option<&str>,
    ) -> Result<Page, Error> {
        self.query(&format!("{}/query", kind.collection()), page_size, continuation).await
    }

    /// A bulk operation on at most [`MAX_BULK_ITEMS`] items; the items that failed (the others are committed).
    pub async fn bulk(
        &self,
        kind: EnrollmentKind,
        mode: BulkMode,
        items: &[Value],
    ) -> Result<Vec<BulkItemError>, Error> {
        if items.len() > MAX_BULK_ITEMS {
            return Err(Error::usage(format!("a bulk call takes at most {MAX_BULK_ITEMS} items")));
        }
        let body = json!({ "mode": mode, kind.collection(): items });
        let answer = self.call(Method::POST, kind.collection(), Some(&body), &[]).await?.body;
        let errors = answer.get("errors").and_then(Value::as_array).cloned().unwrap_or_default();
        Ok(errors
            .iter()
            .map(|e| BulkItemError {
                id: e.get(kind.id_field()).and_then(Value::as_str).unwrap_or_default().to_string(),
                error_code: e.get("errorCode").and_then(Value::as_u64).unwrap_or_default(),
                message: e.get("errorStatus").and_then(Value::as_str).unwrap_or_default().to_string(),
            })
            .collect())
    }

    // ---- registration records ----

    /// A device's registration record.
    pub async fn get_registration(&self, id: &str) -> Result<Value, Error> {
        Ok(self.call(Method::GET, &format!("registrations/{}", seg(id)), None, &[]).await?.body)
    }

    /// Delete a registration record (`etag`: only if it still matches); the device is not touched in its hub.
    pub async fn delete_registration(&self, id: &str, etag: Option<&str>) -> Result<(), Error> {
        self.call(Method::DELETE, &format!("registrations/{}", seg(id)), None, &etag_header(etag)).await.map(drop)
    }

    /// One page of the registration records of a group's devices.
    pub async fn query_registrations(
        &self,
        group_id: &str,
        page_size: usize,
        continuation: Option<&str>,
    ) -> Result<Page, Error> {
        self.query(&format!("registrations/{}/query", seg(group_id)), page_size, continuation).await
    }

    async fn query(&self, path: &str, page_size: usize, continuation: Option<&str>) -> Result<Page, Error> {
        let mut headers = vec![("x-ms-max-item-count", page_size.clamp(1, MAX_PAGE_SIZE).to_string())];
        if let Some(c) = continuation {
            headers.push(("x-ms-continuation", c.to_string()));
        }
        let answer = self.call(Method::POST, path, Some(&json!({ "query": "*" })), &headers).await?;
        let items = match answer.body {
            Value::Array(items) => items,
            other => {
                return Err(Error::of(crate::ErrorKind::Unavailable, format!("a query page is not an array: {other}")));
            }
        };
        Ok(Page { items, continuation: answer.continuation })
    }

    // ---- linked hubs ----

    /// Link a hub, or replace its settings.
    pub async fn put_linked_hub(&self, host_name: &str, body: &Value) -> Result<Value, Error> {
        Ok(self.call(Method::PUT, &Collection::LinkedHubs.member(host_name), Some(body), &[]).await?.body)
    }

    // ---- WebAssembly allocation policies ----

    /// Upload (or replace) a module under `name`; its `PolicyInfo`.
    pub async fn upload_policy(&self, name: &str, module: Vec<u8>) -> Result<Value, Error> {
        let path = Collection::Policies.member(name);
        Ok(self.send(Method::PUT, &path, Some(("application/wasm", module)), &[]).await?.body)
    }

    /// Evaluate a policy on an AllocationRequest; the `DryRun` answer (decision and trace).
    pub async fn dry_run_policy(&self, name: &str, request: &Value) -> Result<Value, Error> {
        Ok(self
            .call(Method::POST, &format!("{}/dryRun", Collection::Policies.member(name)), Some(request), &[])
            .await?
            .body)
    }

    // ---- CA certificates ----

    /// Upload a CA certificate (PEM) under `name`; unverified, with a verification code.
    pub async fn put_ca_certificate(&self, name: &str, pem: &str) -> Result<Value, Error> {
        let path = Collection::CaCertificates.member(name);
        Ok(self.call(Method::PUT, &path, Some(&json!({ "certificate": pem })), &[]).await?.body)
    }

    /// Prove possession of the CA's key with a certificate it signed whose CN is the verification code.
    pub async fn verify_ca_certificate(&self, name: &str, pem: &str) -> Result<Value, Error> {
        let path = format!("{}/verify", Collection::CaCertificates.member(name));
        Ok(self.call(Method::POST, &path, Some(&json!({ "certificate": pem })), &[]).await?.body)
    }

    // ---- the extensions' collections of named entities ----

    /// Every member of `collection`.
    pub async fn list(&self, collection: Collection) -> Result<Vec<Value>, Error> {
        array(self.call(Method::GET, collection.path(), None, &[]).await?.body)
    }

    /// The member `name` of `collection`.
    pub async fn get(&self, collection: Collection, name: &str) -> Result<Value, Error> {
        Ok(self.call(Method::GET, &collection.member(name), None, &[]).await?.body)
    }

    /// Delete the member `name` of `collection` (unlink a hub, remove a policy's name, delete a CA certificate).
    pub async fn delete(&self, collection: Collection, name: &str) -> Result<(), Error> {
        self.call(Method::DELETE, &collection.member(name), None, &[]).await.map(drop)
    }
}

fn array(body: Value) -> Result<Vec<Value>, Error> {
    match body {
        Value::Array(items) => Ok(items),
        other => Err(Error::of(crate::ErrorKind::Unavailable, format!("expected a JSON array, got {other}"))),
    }
}
