//! An HTTP client that records each request (as the AWS operation it is) before handing it to the real one:
//! the tests count the calls a registration makes, retries included.

use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// The operations requested so far.
#[derive(Clone, Debug, Default)]
pub struct Calls(Arc<Mutex<Vec<String>>>);

impl Calls {
    /// Forget the calls so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// The calls so far, in order.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Records into `calls`, then sends with `inner`.
#[derive(Debug)]
pub struct Recording {
    pub inner: SharedHttpClient,
    pub calls: Calls,
}

#[derive(Debug)]
struct RecordingConnector {
    inner: SharedHttpConnector,
    calls: Calls,
}

impl HttpClient for Recording {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(RecordingConnector {
            inner: self.inner.http_connector(settings, components),
            calls: self.calls.clone(),
        })
    }
}

impl HttpConnector for RecordingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let name = operation(request.method(), request.uri());
        self.calls.0.lock().unwrap().push(name);
        self.inner.call(request)
    }
}

/// The IoT / IoT data operation of a REST request (the ones the connector makes), else "METHOD path".
fn operation(method: &str, uri: &str) -> String {
    let path = uri.split_once("://").map_or(uri, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let name = match (method, parts.as_slice()) {
        ("POST", ["things", _]) => "CreateThing",
        ("PATCH", ["things", _]) => "UpdateThing",
        ("GET", ["things", _]) => "DescribeThing",
        ("DELETE", ["things", _]) => "DeleteThing",
        ("PUT", ["thing-groups", "addThingToThingGroup"]) => "AddThingToThingGroup",
        ("POST", ["certificate", "register-no-ca"]) => "RegisterCertificateWithoutCA",
        ("POST", ["certificates"]) => "CreateCertificateFromCsr",
        ("GET", ["certificates", _]) => "DescribeCertificate",
        ("PUT", ["certificates", _]) if query.contains("newStatus") => "UpdateCertificate",
        ("DELETE", ["certificates", _]) => "DeleteCertificate",
        ("PUT", ["things", _, "principals"]) => "AttachThingPrincipal",
        ("DELETE", ["things", _, "principals"]) => "DetachThingPrincipal",
        ("GET", ["things", _, "principals"]) => "ListThingPrincipals",
        ("GET", ["principals", "things"]) => "ListPrincipalThings",
        ("PUT", ["target-policies", _]) => "AttachPolicy",
        ("POST", ["target-policies", _]) => "DetachPolicy",
        ("GET", ["things", _, "shadow"]) => "GetThingShadow",
        ("POST", ["things", _, "shadow"]) => "UpdateThingShadow",
        ("DELETE", ["things", _, "shadow"]) => "DeleteThingShadow",
        _ => return format!("{method} {path}"),
    };
    name.to_string()
}
