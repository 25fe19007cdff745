//! The service API: individual enrollments, enrollment groups, registration records (Azure shapes).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use dps_core::Dps;
use dps_core::model::{EnrollmentGroup, IndividualEnrollment};
use dps_core::service::{BulkMode, BulkOutcome, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use dps_core::store::{Page, PageRequest};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json as json_value};

use crate::error::ApiError;
use crate::extract::{
    ApiVersion, Authed, JsonBody, MAX_BODY_BYTES, MAX_POLICY_BYTES, Segments, from_value, header_str, if_match, json,
    set_header,
};
use crate::layers::{canon, no_route};
use crate::wire::{BulkRequest, BulkResult, DeviceRegistrationState};

/// The service API route table (without layers), including our /config and /policies extensions.
pub(crate) fn routes(dps: Dps) -> Router {
    Router::new()
        .route("/enrollments", post(bulk_enrollments))
        .route("/enrollments/query", post(query_enrollments))
        .route("/enrollments/{id}", put(put_enrollment).get(get_enrollment).delete(delete_enrollment))
        .route("/enrollments/{id}/attestationmechanism", post(enrollment_attestation))
        .route("/enrollmentGroups", post(bulk_groups))
        .route("/enrollmentGroups/query", post(query_groups))
        .route("/enrollmentGroups/{id}", put(put_group).get(get_group).delete(delete_group))
        .route("/enrollmentGroups/{id}/attestationmechanism", post(group_attestation))
        .route("/registrations/{id}", get(get_registration).delete(delete_registration))
        .route("/registrations/{id}/query", post(query_registrations))
        .merge(crate::config::routes())
        .merge(crate::policies::routes())
        .fallback(no_route)
        .with_state(dps)
}

/// First path segments the service API owns (lower case), used by [`crate::app`] to dispatch.
pub(crate) const COLLECTIONS: [&str; 5] = ["enrollments", "enrollmentgroups", "registrations", "config", "policies"];

/// Canonical spelling of the service API's literal path segments.
pub(crate) fn normalise(segments: &[&str]) -> Vec<String> {
    let first =
        segments.first().map(|s| canon(s, &["enrollments", "enrollmentGroups", "registrations", "config", "policies"]));
    let collection = first.as_deref().unwrap_or_default();
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| match (i, collection) {
            (0, _) => first.clone().unwrap_or_default(),
            (1, "config") => canon(s, &["linkedHubs", "authorizationPolicies", "operations", "webhookSigningKey"]),
            (2, "policies") => canon(s, &["dryRun"]),
            (_, "config" | "policies") => s.to_string(),
            (1, _) => canon(s, &["query"]),
            (2, _) => canon(s, &["attestationmechanism", "query"]),
            _ => s.to_string(),
        })
        .collect()
}

/// The body limit of a service API request: [`MAX_POLICY_BYTES`] for a policy upload (`PUT /policies/{name}`,
/// any case, trailing slash or not), [`MAX_BODY_BYTES`] everywhere else.
pub(crate) fn body_limit(method: &Method, path: &str) -> usize {
    let mut segments = path.trim_matches('/').split('/');
    let is_upload = method == Method::PUT
        && segments.next().is_some_and(|s| s.eq_ignore_ascii_case("policies"))
        && segments.next().is_some_and(|s| !s.is_empty())
        && segments.next().is_none();
    if is_upload { MAX_POLICY_BYTES } else { MAX_BODY_BYTES }
}

// ---- individual enrollments ----

async fn put_enrollment(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(id): Segments<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<IndividualEnrollment>,
) -> Result<Response, ApiError> {
    let body = body.ok_or_else(|| ApiError::malformed_body("An individual enrollment body is required"))?;
    let mut written = dps.put_enrollment(&caller, &id, body, if_match(&headers)).await?;
    written.spec.attestation = written.spec.attestation.without_secrets();
    Ok(json(StatusCode::OK, &written))
}

async fn get_enrollment(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(id): Segments<String>,
) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &dps.get_enrollment(&caller, &id).await?))
}

async fn delete_enrollment(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(id): Segments<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    dps.delete_enrollment(&caller, &id, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn enrollment_attestation(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(id): Segments<String>,
) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &dps.enrollment_attestation(&caller, &id).await?))
}

async fn query_enrollments(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    headers: HeaderMap,
    JsonBody(body): JsonBody<QuerySpecification>,
) -> Result<Response, ApiError> {
    let page = page_request(&headers)?;
    let max = page.max_items;
    let got = dps.query_enrollments(&caller, &query_text(body), page).await?;
    Ok(page_answer(got, "enrollment", max))
}

async fn bulk_enrollments(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    JsonBody(body): JsonBody<BulkRequest>,
) -> Result<Response, ApiError> {
    let body = body.ok_or_else(|| ApiError::malformed_body("A bulk operation body is required"))?;
    let items: Vec<IndividualEnrollment> = bulk_items(body.mode, body.enrollments, "enrollments")?;
    let outcome = dps.bulk_enrollments(&caller, body.mode, items).await?;
    Ok(bulk_answer(outcome, "registrationId"))
}

// ---- enrollment groups ----

async fn put_group(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(id): Segments<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<EnrollmentGroup>,
) -> Result<Response, ApiError> {
    let body = body.ok_or_else(|| ApiError::malformed_body("An enrollment group body is required"))?;
    let mut written = dps.put_group(&caller, &id, body, if_match(&headers)).await?;
    written.spec.attestation = written.spec.attestation.without_secrets();
    Ok(json(StatusCode::OK, &written))
}

async fn get_group(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(id): Segments<String>,
) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &dps.get_group(&caller, &id).await?))
}

async fn delete_group(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(id): Segments<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    dps.delete_group(&caller, &id, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn group_attestation(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(id): Segments<String>,
) -> Result<Response, ApiError> {
    Ok(json(StatusCode::OK, &dps.group_attestation(&caller, &id).await?))
}

async fn query_groups(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    headers: HeaderMap,
    JsonBody(body): JsonBody<QuerySpecification>,
) -> Result<Response, ApiError> {
    let page = page_request(&headers)?;
    let max = page.max_items;
    let got = dps.query_groups(&caller, &query_text(body), page).await?;
    Ok(page_answer(got, "enrollmentGroup", max))
}

async fn bulk_groups(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    JsonBody(body): JsonBody<BulkRequest>,
) -> Result<Response, ApiError> {
    let body = body.ok_or_else(|| ApiError::malformed_body("A bulk operation body is required"))?;
    let items: Vec<EnrollmentGroup> = bulk_items(body.mode, body.enrollment_groups, "enrollmentGroups")?;
    let outcome = dps.bulk_groups(&caller, body.mode, items).await?;
    Ok(bulk_answer(outcome, "enrollmentGroupId"))
}

// ---- registration records ----

async fn get_registration(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(id): Segments<String>,
) -> Result<Response, ApiError> {
    let record = dps.get_registration(&caller, &id).await?;
    Ok(json(StatusCode::OK, &DeviceRegistrationState::from(record)))
}

async fn delete_registration(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(id): Segments<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    dps.delete_registration(&caller, &id, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn query_registrations(
    State(dps): State<Dps>,
    _: ApiVersion,
    Authed(caller): Authed,
    Segments(group_id): Segments<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<QuerySpecification>,
) -> Result<Response, ApiError> {
    let page = page_request(&headers)?;
    let max = page.max_items;
    // The body ({"query":"*"} from the Node SDK) selects nothing more: the group is in the path.
    drop(body);
    let got = dps.query_registrations(&caller, &group_id, page).await?;
    let got = Page {
        items: got.items.into_iter().map(DeviceRegistrationState::from).collect::<Vec<_>>(),
        continuation: got.continuation,
    };
    Ok(page_answer(got, "deviceRegistration", max))
}

// ---- shared pieces ----

/// `QuerySpecification`: `{"query": "*"}`.
#[derive(Debug, Deserialize)]
struct QuerySpecification {
    #[serde(default)]
    query: Option<String>,
}

fn query_text(body: Option<QuerySpecification>) -> String {
    body.and_then(|b| b.query).unwrap_or_else(|| "*".to_string())
}

/// Page size and continuation from `x-ms-max-item-count` and `x-ms-continuation`.
fn page_request(headers: &HeaderMap) -> Result<PageRequest, ApiError> {
    let max_items = match header_str(headers, "x-ms-max-item-count").map(str::trim) {
        None | Some("") => DEFAULT_PAGE_SIZE,
        Some(v) => match v.parse::<usize>() {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(n) => n.min(MAX_PAGE_SIZE),
            Err(_) => return Err(ApiError::invalid("x-ms-max-item-count must be a positive integer")),
        },
    };
    let continuation = header_str(headers, "x-ms-continuation").map(str::trim).filter(|c| !c.is_empty());
    Ok(PageRequest { max_items, continuation: continuation.map(str::to_string) })
}

/// A JSON array page; `x-ms-item-type` as the SDKs' enums spell it (`enrollment`, `enrollmentGroup`,
/// `deviceRegistration`); `x-ms-continuation` only when there is a next page (an empty one makes clients loop).
fn page_answer<T: Serialize>(page: Page<T>, item_type: &str, max_items: usize) -> Response {
    let mut response = json(StatusCode::OK, &page.items);
    if let Some(next) = page.continuation.filter(|c| !c.is_empty()) {
        set_header(&mut response, "x-ms-continuation", &next);
    }
    set_header(&mut response, "x-ms-item-type", item_type);
    set_header(&mut response, "x-ms-max-item-count", &max_items.to_string());
    response
}

/// Parse bulk items; a malformed item fails the whole request. A delete needs only the ID (and etag), so a
/// missing attestation is tolerated there.
fn bulk_items<T: serde::de::DeserializeOwned>(
    mode: BulkMode,
    items: Option<Vec<Value>>,
    field: &str,
) -> Result<Vec<T>, ApiError> {
    let items = items.ok_or_else(|| ApiError::malformed_body(format!("The bulk operation needs '{field}'")))?;
    items
        .into_iter()
        .enumerate()
        .map(|(i, mut item)| {
            if mode == BulkMode::Delete
                && let Some(obj) = item.as_object_mut()
            {
                obj.entry("attestation").or_insert_with(|| json_value!({ "type": "none" }));
            }
            from_value(item, &format!("{field}[{i}]"))
        })
        .collect()
}

fn bulk_answer(outcome: BulkOutcome, id_field: &str) -> Response {
    let errors: Vec<Value> = outcome
        .errors
        .into_iter()
        .map(|item| {
            let error = ApiError::from(item.error);
            json_value!({ id_field: item.id, "errorCode": error.code(), "errorStatus": error.message })
        })
        .collect();
    json(StatusCode::OK, &BulkResult { is_successful: errors.is_empty(), errors })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(path: &str) -> String {
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        format!("/{}", normalise(&segments).join("/"))
    }

    #[test]
    fn policy_paths_are_normalised_keeping_names() {
        assert_eq!(canonical("/POLICIES/By-Region/dryrun"), "/policies/By-Region/dryRun");
        assert_eq!(canonical("/Policies/query"), "/policies/query", "a policy may be called 'query'");
        assert_eq!(canonical("/config/webhooksigningkey"), "/config/webhookSigningKey");
        assert_eq!(canonical("/enrollmentgroups/g/attestationmechanism"), "/enrollmentGroups/g/attestationmechanism");
    }

    #[test]
    fn only_a_policy_upload_gets_the_module_limit() {
        assert_eq!(body_limit(&Method::PUT, "/policies/by-region"), MAX_POLICY_BYTES);
        assert_eq!(body_limit(&Method::PUT, "/Policies/by-region/"), MAX_POLICY_BYTES);
        assert_eq!(body_limit(&Method::POST, "/policies/by-region/dryRun"), MAX_BODY_BYTES);
        assert_eq!(body_limit(&Method::PUT, "/policies/by-region/dryRun"), MAX_BODY_BYTES);
        assert_eq!(body_limit(&Method::POST, "/policies/by-region"), MAX_BODY_BYTES);
        assert_eq!(body_limit(&Method::PUT, "/policies"), MAX_BODY_BYTES);
        assert_eq!(body_limit(&Method::PUT, "/enrollments/policies"), MAX_BODY_BYTES);
    }
}
