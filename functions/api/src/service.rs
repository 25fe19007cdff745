//! The service API: individual enrollments, enrollment groups, registration records (Azure shapes).

use axum::Router;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use dps_core::Dps;
use dps_core::model::{Enrollment, EnrollmentGroup, EnrollmentKind, IndividualEnrollment};
use dps_core::store::{Page, PageRequest};
use dps_core::usecases::{BulkMode, BulkOutcome, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json as json_value};

use crate::error::ApiError;
use crate::extract::{
    Answer, Call, JsonBody, MAX_BODY_BYTES, MAX_POLICY_BYTES, Segments, ServiceCall, from_value, header_str, if_match,
    json, set_header,
};
use crate::layers::{canon, no_route};
use crate::routes::RouteTable;
use crate::wire::{BulkRequest, BulkResult, DeviceRegistrationState};

/// The service API route table (without layers), including our /config and /policies extensions.
pub(crate) fn routes(dps: Dps) -> Router {
    route_table().into_router().fallback(no_route).with_state(dps)
}

/// Every route of the service API, listed as it is registered (see [`crate::routes`]).
pub(crate) fn route_table() -> RouteTable<Dps> {
    let table = RouteTable::new();
    let table = enrollment_routes::<IndividualEnrollment>(table);
    let table = enrollment_routes::<EnrollmentGroup>(table);
    table
        .get("/registrations/{id}", get_registration)
        .delete("/registrations/{id}", delete_registration)
        .post("/registrations/{id}/query", query_registrations)
        .merge(crate::config::routes())
        .merge(crate::policies::routes())
        .get(crate::openapi::PATH, crate::openapi::serve)
}

/// The routes of one kind of enrollment, under its collection name (`/enrollments`, `/enrollmentGroups`).
fn enrollment_routes<E: Enrollment>(table: RouteTable<Dps>) -> RouteTable<Dps> {
    let base = format!("/{}", E::KIND.collection());
    let one = format!("{base}/{{id}}");
    table
        .post(&base, bulk_enrollments::<E>)
        .post(&format!("{base}/query"), query_enrollments::<E>)
        .put(&one, put_enrollment::<E>)
        .get(&one, get_enrollment::<E>)
        .delete(&one, delete_enrollment::<E>)
        .post(&format!("{one}/attestationmechanism"), enrollment_attestation::<E>)
}

/// First path segments of the service API, as they are spelled canonically.
const TOP_SEGMENTS: [&str; 6] = [
    EnrollmentKind::Individual.collection(),
    EnrollmentKind::Group.collection(),
    "registrations",
    "config",
    "policies",
    crate::openapi::SEGMENT,
];

/// Whether `segment` is a first path segment the service API owns (any case), used by [`crate::app`].
pub(crate) fn owns(segment: &str) -> bool {
    TOP_SEGMENTS.iter().any(|c| c.eq_ignore_ascii_case(segment))
}

/// Canonical spelling of the service API's literal path segments.
pub(crate) fn normalise(segments: &[&str]) -> Vec<String> {
    let first = segments.first().map(|s| canon(s, &TOP_SEGMENTS));
    let collection = first.as_deref().unwrap_or_default();
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| match (i, collection) {
            (0, _) => first.clone().unwrap_or_default(),
            (1, "config") => {
                canon(s, &["linkedHubs", "authorizationPolicies", "certificates", "operations", "webhookSigningKey"])
            }
            (3, "config") if segments[1].eq_ignore_ascii_case("certificates") => canon(s, &["verify"]),
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

// ---- enrollments, either kind ----

async fn put_enrollment<E: Enrollment>(
    Call { dps, caller, .. }: ServiceCall,
    Segments(id): Segments<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<E>,
) -> Answer {
    let body = body.ok_or_else(|| ApiError::malformed_body(format!("{} body is required", E::KIND.with_article())))?;
    Ok(json(StatusCode::OK, &dps.put_enrollment(&caller, &id, body, if_match(&headers)).await?))
}

async fn get_enrollment<E: Enrollment>(
    Call { dps, caller, .. }: ServiceCall,
    Segments(id): Segments<String>,
) -> Answer {
    Ok(json(StatusCode::OK, &dps.get_enrollment::<E>(&caller, &id).await?))
}

async fn delete_enrollment<E: Enrollment>(
    Call { dps, caller, .. }: ServiceCall,
    Segments(id): Segments<String>,
    headers: HeaderMap,
) -> Answer {
    dps.delete_enrollment::<E>(&caller, &id, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn enrollment_attestation<E: Enrollment>(
    Call { dps, caller, .. }: ServiceCall,
    Segments(id): Segments<String>,
) -> Answer {
    Ok(json(StatusCode::OK, &dps.enrollment_attestation::<E>(&caller, &id).await?))
}

async fn query_enrollments<E: Enrollment>(
    Call { dps, caller, .. }: ServiceCall,
    headers: HeaderMap,
    JsonBody(body): JsonBody<QuerySpecification>,
) -> Answer {
    let page = page_request(&headers)?;
    let max = page.max_items;
    let got = dps.query_enrollments::<E>(&caller, &query_text(body), page).await?;
    Ok(page_answer(got, E::KIND.item_type(), max))
}

async fn bulk_enrollments<E: Enrollment>(
    Call { dps, caller, .. }: ServiceCall,
    JsonBody(body): JsonBody<BulkRequest>,
) -> Answer {
    let body = body.ok_or_else(|| ApiError::malformed_body("A bulk operation body is required"))?;
    let mode = body.mode;
    let items: Vec<E> = bulk_items(mode, body.items_of(E::KIND), E::KIND.collection())?;
    let outcome = dps.bulk_enrollments(&caller, mode, items).await?;
    Ok(bulk_answer(outcome, E::KIND.id_field()))
}

// ---- registration records ----

async fn get_registration(Call { dps, caller, .. }: ServiceCall, Segments(id): Segments<String>) -> Answer {
    let record = dps.get_registration(&caller, &id).await?;
    Ok(json(StatusCode::OK, &DeviceRegistrationState::from(record)))
}

async fn delete_registration(
    Call { dps, caller, .. }: ServiceCall,
    Segments(id): Segments<String>,
    headers: HeaderMap,
) -> Answer {
    dps.delete_registration(&caller, &id, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn query_registrations(
    Call { dps, caller, .. }: ServiceCall,
    Segments(group_id): Segments<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<QuerySpecification>,
) -> Answer {
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
pub(crate) fn bulk_items<T: serde::de::DeserializeOwned>(
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
