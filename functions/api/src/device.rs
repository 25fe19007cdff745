//! The device (runtime) API: register, operation status lookup, registration status lookup.

use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{AUTHORIZATION, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use dps_core::Dps;
use dps_core::model::{RegistrationRecord, RegistrationStatus};
use dps_core::usecases::{DeviceCaller, RegisterRequest, StatusRequest};

use crate::certs::ClientCertificates;
use crate::error::ApiError;
use crate::extract::{ApiVersion, JsonBody, Segments, header_str, json};
use crate::layers::{canon, no_route};
use crate::wire::{DeviceRegistration, DeviceRegistrationResult, RegistrationOperationStatus};

/// Seconds a device is told to wait before polling an operation still `assigning`.
const POLL_AFTER_SECS: u32 = 2;

/// The device API route table (without layers).
pub(crate) fn routes(dps: Dps) -> Router {
    Router::new()
        .route("/{id_scope}/registrations/{registration_id}/register", put(register))
        .route("/{id_scope}/registrations/{registration_id}/operations/{operation_id}", get(operation_status))
        .route("/{id_scope}/registrations/{registration_id}", post(registration_status))
        .fallback(no_route)
        .with_state(dps)
}

/// Canonical spelling of the device API's literal path segments.
pub(crate) fn normalise(segments: &[&str]) -> Vec<String> {
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| match i {
            1 => canon(s, &["registrations"]),
            3 => canon(s, &["register", "operations"]),
            _ => s.to_string(),
        })
        .collect()
}

/// The client's IP address, as the front door knows it (a request extension the server inserts; absent where
/// the front door does not say). Failed device attestations are limited per address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddress(pub std::net::IpAddr);

/// The extractor of the calling device ([`DeviceCaller`]): the ID scope and registration ID of the path (also
/// recorded on the request's span), the `Authorization` header, the certificate chain the front door received,
/// and its address; and the path's operation ID where the route has one. The body's `registrationId` is the
/// handler's to add.
struct Device(DeviceCaller, Option<String>);

/// The device routes' path parameters, read in one pass (no map per request).
#[derive(serde::Deserialize)]
struct DevicePath {
    id_scope: String,
    registration_id: String,
    operation_id: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Device {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Segments(DevicePath { id_scope, registration_id, operation_id }) =
            Segments::from_request_parts(parts, state).await?;
        tracing::Span::current().record("scope", id_scope.as_str());
        let certificates = parts.extensions.get::<ClientCertificates>();
        let caller = DeviceCaller {
            id_scope,
            registration_id,
            body_registration_id: None,
            authorization: header_str(&parts.headers, AUTHORIZATION.as_str()).map(str::to_string),
            client_certificates: certificates.map_or(Ok(Vec::new()), ClientCertificates::der)?,
            client_address: parts.extensions.get::<ClientAddress>().map(|ClientAddress(ip)| *ip),
        };
        Ok(Self(caller, operation_id))
    }
}

async fn register(
    State(dps): State<Dps>,
    ApiVersion(api_version): ApiVersion,
    Device(caller, _): Device,
    JsonBody(body): JsonBody<DeviceRegistration>,
) -> Result<Response, ApiError> {
    let body = body.unwrap_or_default();
    let csr = csr_der(&body, &api_version)?;
    let caller = DeviceCaller { body_registration_id: body.registration_id, ..caller };
    let record =
        dps.register(RegisterRequest { caller, payload: body.payload, api_version, tpm: body.tpm, csr }).await?;
    // Clients (iot-identity-service) accept only 202 here, whatever the outcome.
    Ok(operation_answer(&record, StatusCode::ACCEPTED))
}

async fn operation_status(
    State(dps): State<Dps>,
    _: ApiVersion,
    Device(caller, operation_id): Device,
) -> Result<Response, ApiError> {
    // The Node SDK sends "{}" with this GET; the body is never read.
    let record = dps.operation_status(StatusRequest { caller, operation_id }).await?;
    let status = if record.status == RegistrationStatus::Assigning { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok(operation_answer(&record, status))
}

async fn registration_status(
    State(dps): State<Dps>,
    _: ApiVersion,
    Device(caller, _): Device,
    JsonBody(body): JsonBody<DeviceRegistration>,
) -> Result<Response, ApiError> {
    let body = body.unwrap_or_default();
    if body.csr.is_some() {
        return Err(ApiError::invalid("A csr is not accepted by the registration status lookup"));
    }
    let caller = DeviceCaller { body_registration_id: body.registration_id, ..caller };
    let record = dps.registration_status(StatusRequest { caller, operation_id: None }).await?;
    Ok(json(StatusCode::OK, &DeviceRegistrationResult::from(&record)))
}

/// `RegistrationOperationStatus`, with `Retry-After` only while the registration is still being assigned.
fn operation_answer(record: &RegistrationRecord, status: StatusCode) -> Response {
    let mut response = json(status, &RegistrationOperationStatus::from(record));
    if record.status == RegistrationStatus::Assigning {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(POLL_AFTER_SECS));
    }
    response
}

/// Certificate issuance (`csr`, from api-version 2025-07-01-preview on): the base64 DER the body carries,
/// decoded. What it says (subject, key, signature) is checked by the core before any hub is called.
fn csr_der(body: &DeviceRegistration, api_version: &str) -> Result<Option<Vec<u8>>, ApiError> {
    use base64::Engine as _;
    match &body.csr {
        None => Ok(None),
        Some(_) if api_version < "2025-07-01" => {
            Err(ApiError::invalid(format!("csr is not part of api-version {api_version}")))
        }
        Some(csr) => base64::engine::general_purpose::STANDARD
            .decode(csr.trim())
            .map(Some)
            .map_err(|_| ApiError::invalid("csr must be a base64-encoded DER PKCS#10 certificate signing request")),
    }
}
