//! Our extension of the service API: instance configuration under `/config` (ServiceConfig right).
//! Documented in docs/service-api-extensions.md. `api-version` is optional here, checked when sent.

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use dps_core::Dps;
use dps_core::model::{AccessPolicy, LinkedHub, Right};
use dps_core::usecases::InstanceConfig;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::extract::{Answer, Call, ExtensionCall, JsonBody, Segments, from_value, if_match, json, query_param};
use crate::routes::RouteTable;

/// The /config route table (state supplied by the service router).
pub(crate) fn routes() -> RouteTable<Dps> {
    RouteTable::new()
        .get("/config", get_config)
        .put("/config", put_config)
        .get("/config/linkedHubs", list_linked_hubs)
        .get("/config/linkedHubs/{host_name}", get_linked_hub)
        .put("/config/linkedHubs/{host_name}", put_linked_hub)
        .delete("/config/linkedHubs/{host_name}", delete_linked_hub)
        .get("/config/authorizationPolicies", list_access_policies)
        .get("/config/authorizationPolicies/{key_name}", get_access_policy)
        .put("/config/authorizationPolicies/{key_name}", put_access_policy)
        .delete("/config/authorizationPolicies/{key_name}", delete_access_policy)
        .get("/config/certificates", list_certificates)
        .get("/config/certificates/{name}", get_certificate)
        .put("/config/certificates/{name}", put_certificate)
        .delete("/config/certificates/{name}", delete_certificate)
        .post("/config/certificates/{name}/verify", verify_certificate)
        .get("/config/operations", operations)
        .get("/config/webhookSigningKey", webhook_signing_key)
}

/// The key that signs webhook calls (`x-dps-signature-256`), for receivers to verify them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookSigningKey {
    webhook_signing_key: String,
}

async fn webhook_signing_key(Call { dps, caller, .. }: ExtensionCall) -> Answer {
    let webhook_signing_key = dps.webhook_signing_key(&caller).await?;
    Ok(json(StatusCode::OK, &WebhookSigningKey { webhook_signing_key }))
}

async fn get_config(Call { dps, caller, .. }: ExtensionCall) -> Answer {
    Ok(json(StatusCode::OK, &dps.get_config(&caller).await?))
}

async fn put_config(
    Call { dps, caller, .. }: ExtensionCall,
    headers: HeaderMap,
    JsonBody(body): JsonBody<InstanceConfig>,
) -> Answer {
    let body = body.ok_or_else(|| ApiError::malformed_body("A configuration body is required"))?;
    Ok(json(StatusCode::OK, &dps.put_config(&caller, body, if_match(&headers)).await?))
}

async fn list_linked_hubs(Call { dps, caller, .. }: ExtensionCall) -> Answer {
    Ok(json(StatusCode::OK, &dps.get_config(&caller).await?.linked_hubs))
}

async fn get_linked_hub(Call { dps, caller, .. }: ExtensionCall, Segments(host_name): Segments<String>) -> Answer {
    Ok(json(StatusCode::OK, &dps.get_linked_hub(&caller, &host_name).await?))
}

/// A linked hub as PUT: core's `LinkedHub` (with its defaults); the host name comes from the path (the body's, if
/// sent, must agree). `connector.credentials` is write-only (sealed by the service; answers say `credentialsSet`).
async fn put_linked_hub(
    Call { dps, caller, .. }: ExtensionCall,
    Segments(host_name): Segments<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Answer {
    let mut body = body.ok_or_else(|| ApiError::malformed_body("A linked hub body is required"))?;
    let fields =
        body.as_object_mut().ok_or_else(|| ApiError::malformed_body("The linked hub body must be a JSON object"))?;
    // A field sent as null counts as absent, as it did before the body became core's type (whose defaults
    // apply only to missing fields).
    fields.retain(|_, value| !value.is_null());
    fields.entry("hostName").or_insert_with(|| host_name.clone().into());
    let hub: LinkedHub = from_value(body, "linked hub")?;
    same_name("hostName", Some(hub.host_name.as_str()), &host_name)?;
    Ok(json(StatusCode::OK, &dps.put_linked_hub(&caller, hub).await?))
}

/// The name a PUT body gives its entity (`field`), if it gives one, must be the path's (case-insensitively).
fn same_name(field: &str, in_body: Option<&str>, in_path: &str) -> Result<(), ApiError> {
    if in_body.is_some_and(|name| !name.eq_ignore_ascii_case(in_path)) {
        return Err(ApiError::invalid(format!("The {field} in the body does not match the path")));
    }
    Ok(())
}

async fn delete_linked_hub(Call { dps, caller, .. }: ExtensionCall, Segments(host_name): Segments<String>) -> Answer {
    dps.delete_linked_hub(&caller, &host_name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A CA certificate upload, or the proof-of-possession certificate for `verify`: PEM (or base64 of PEM or DER).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificateBody {
    certificate: String,
}

async fn list_certificates(Call { dps, caller, .. }: ExtensionCall) -> Answer {
    Ok(json(StatusCode::OK, &dps.list_ca_certificates(&caller).await?))
}

async fn get_certificate(Call { dps, caller, .. }: ExtensionCall, Segments(name): Segments<String>) -> Answer {
    Ok(json(StatusCode::OK, &dps.get_ca_certificate(&caller, &name).await?))
}

async fn put_certificate(
    Call { dps, caller, .. }: ExtensionCall,
    Segments(name): Segments<String>,
    JsonBody(body): JsonBody<CertificateBody>,
) -> Answer {
    let body = body.ok_or_else(|| ApiError::malformed_body("A body with the certificate is required"))?;
    Ok(json(StatusCode::OK, &dps.put_ca_certificate(&caller, &name, &body.certificate).await?))
}

async fn verify_certificate(
    Call { dps, caller, .. }: ExtensionCall,
    Segments(name): Segments<String>,
    JsonBody(body): JsonBody<CertificateBody>,
) -> Answer {
    let body = body.ok_or_else(|| ApiError::malformed_body("A body with the verification certificate is required"))?;
    Ok(json(StatusCode::OK, &dps.verify_ca_certificate(&caller, &name, &body.certificate).await?))
}

async fn delete_certificate(Call { dps, caller, .. }: ExtensionCall, Segments(name): Segments<String>) -> Answer {
    dps.delete_ca_certificate(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_access_policies(Call { dps, caller, .. }: ExtensionCall) -> Answer {
    Ok(json(StatusCode::OK, &dps.list_access_policies(&caller).await?))
}

async fn get_access_policy(Call { dps, caller, .. }: ExtensionCall, Segments(key_name): Segments<String>) -> Answer {
    Ok(json(StatusCode::OK, &dps.get_access_policy(&caller, &key_name).await?))
}

/// A policy as PUT: rights, and optionally the keys (generated, or kept when replacing, if absent).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccessPolicyBody {
    #[serde(default)]
    key_name: Option<String>,
    rights: Vec<Right>,
    #[serde(default)]
    primary_key: Option<String>,
    #[serde(default)]
    secondary_key: Option<String>,
}

async fn put_access_policy(
    Call { dps, caller, .. }: ExtensionCall,
    Segments(key_name): Segments<String>,
    JsonBody(body): JsonBody<AccessPolicyBody>,
) -> Answer {
    let body = body.ok_or_else(|| ApiError::malformed_body("A policy body is required"))?;
    same_name("keyName", body.key_name.as_deref(), &key_name)?;
    let policy = AccessPolicy {
        key_name,
        primary_key: body.primary_key.unwrap_or_default(),
        secondary_key: body.secondary_key.unwrap_or_default(),
        rights: body.rights,
    };
    Ok(json(StatusCode::OK, &dps.put_access_policy(&caller, policy).await?))
}

async fn delete_access_policy(Call { dps, caller, .. }: ExtensionCall, Segments(key_name): Segments<String>) -> Answer {
    dps.delete_access_policy(&caller, &key_name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn operations(Call { dps, caller, .. }: ExtensionCall, req: Request) -> Answer {
    let (parts, _) = req.into_parts();
    let (from, to) = day_range(&parts);
    Ok(json(StatusCode::OK, &dps.operations(&caller, &from, &to).await?))
}

/// `from` and `to` (`YYYY-MM-DD`), each defaulting to today (UTC).
fn day_range(parts: &Parts) -> (String, String) {
    let today = dps_core::usecases::today();
    let from = query_param(parts, "from").unwrap_or_else(|| today.clone());
    let to = query_param(parts, "to").unwrap_or(today);
    (from, to)
}
