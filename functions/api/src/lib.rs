//! HTTP surface of the device provisioning service: the Azure DPS device API and service API (plus our
//! `/config` and `/policies` extensions) as axum routers. Each router carries every layer it needs (tracking ID, body limit,
//! Azure error bodies), so a binary only serves it: axum over TLS locally, `lambda_http::run` on Lambda.

mod bounds;
pub mod certs;
mod config;
mod device;
pub mod error;
pub mod extract;
pub mod layers;
mod metrics;
mod openapi;
mod policies;
mod routes;
mod service;
pub mod wire;

use axum::Router;
use axum::extract::Request;
use dps_core::Dps;

pub use certs::{ClientCertificateSource, ClientCertificates, with_alb_client_certificates};
pub use device::ClientAddress;
pub use error::ApiError;
pub use extract::{API_VERSIONS, MAX_BODY_BYTES, MAX_JSON_DEPTH, MAX_POLICY_BYTES, service_host};
pub use layers::{REQUEST_ID_HEADER, TrackingId};
pub use metrics::with_request_metrics;
pub use openapi::OPENAPI_JSON;
pub use routes::Route;

/// The device API only: `/{idScope}/registrations/{registrationId}[/register | /operations/{operationId}]`.
pub fn device_router(dps: Dps) -> Router {
    layers::front(vec![device_api(dps)])
}

/// The service API only: `/enrollments`, `/enrollmentGroups`, `/registrations`, and our `/config` and
/// `/policies` extensions, described by the OpenAPI document it serves at `/openapi.json` ([`OPENAPI_JSON`]).
/// The instance is the one whose service host name is the request's host (see [`service_host`]).
pub fn service_router(dps: Dps) -> Router {
    layers::front(vec![service_api(dps)])
}

/// Every route of [`service_router`], as it registers them (docs/openapi.json documents exactly these).
pub fn service_routes() -> Vec<Route> {
    service::route_table().routes().to_vec()
}

/// Both APIs on one listener, behind one front service: paths whose first segment is a service API collection
/// go to the service API's routes, everything else to the device API's (whose first segment is an ID scope).
pub fn app(dps: Dps) -> Router {
    layers::front(vec![service_api(dps.clone()), device_api(dps)])
}

fn device_api(dps: Dps) -> layers::Api {
    layers::Api {
        serves: |_| true,
        routes: device::routes(dps),
        normalise: device::normalise,
        limit: |_, _| MAX_BODY_BYTES,
    }
}

fn service_api(dps: Dps) -> layers::Api {
    layers::Api {
        serves: is_service_path,
        routes: service::routes(dps),
        normalise: service::normalise,
        limit: service::body_limit,
    }
}

/// `router` with a deadline: a request not answered within `limit` gets 503 (`Unavailable` in the error table,
/// `Retry-After: 1`). Both binaries (the local server and the Lambda functions) serve their routers through it.
pub fn with_deadline(router: Router, limit: std::time::Duration) -> Router {
    router.layer(axum::middleware::from_fn(move |req: Request, next: axum::middleware::Next| {
        layers::deadline(limit, req, next)
    }))
}

fn is_service_path(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or_default();
    service::owns(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_by_first_segment() {
        assert!(is_service_path("/enrollments/x"));
        assert!(is_service_path("/enrollmentgroups/x/attestationmechanism"));
        assert!(is_service_path("/Registrations/x"));
        assert!(is_service_path("/config"));
        assert!(is_service_path("/policies/by-region/dryRun"));
        assert!(is_service_path("/Policies"));
        assert!(is_service_path("/openapi.json"));
        assert!(!is_service_path("/0ne0000000A/registrations/x/register"));
        assert!(!is_service_path("/"));
    }
}
