//! Our extension: WebAssembly allocation policies under `/policies` (ServiceConfig right). Documented in
//! docs/service-api-extensions.md and docs/custom-allocation.md. `api-version` is optional here, checked when sent.
//!
//! `PUT /policies/{name}` is the one route whose body may exceed 96 KB: up to [`MAX_POLICY_BYTES`] (see
//! [`crate::service::body_limit`]), and only as `application/wasm`.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use dps_core::Dps;
use serde_json::Value;

use crate::error::ApiError;
use crate::extract::{
    Answer, Call, ExtensionCall, JsonBody, MAX_POLICY_BYTES, Segments, has_content_type, json, read_body,
};
use crate::routes::RouteTable;

/// Media type of a policy upload.
const WASM_CONTENT_TYPE: &str = "application/wasm";

/// The /policies route table (state supplied by the service router).
pub(crate) fn routes() -> RouteTable<Dps> {
    RouteTable::new()
        .get("/policies", list)
        .get("/policies/{name}", get_one)
        .put("/policies/{name}", upload)
        .delete("/policies/{name}", delete)
        .post("/policies/{name}/dryRun", dry_run)
}

async fn upload(Call { dps, caller, .. }: ExtensionCall, Segments(name): Segments<String>, req: Request) -> Answer {
    let (parts, body) = req.into_parts();
    if !has_content_type(&parts.headers, WASM_CONTENT_TYPE) {
        return Err(ApiError::media_type_of(WASM_CONTENT_TYPE));
    }
    let module = read_body(body, MAX_POLICY_BYTES).await?;
    if module.is_empty() {
        return Err(ApiError::malformed_body("A policy upload needs the WebAssembly module as its body"));
    }
    Ok(json(StatusCode::OK, &dps.upload_policy(&caller, &name, module.to_vec()).await?))
}

async fn list(Call { dps, caller, .. }: ExtensionCall) -> Answer {
    Ok(json(StatusCode::OK, &dps.list_policies(&caller).await?))
}

async fn get_one(Call { dps, caller, .. }: ExtensionCall, Segments(name): Segments<String>) -> Answer {
    Ok(json(StatusCode::OK, &dps.get_policy(&caller, &name).await?))
}

async fn delete(Call { dps, caller, .. }: ExtensionCall, Segments(name): Segments<String>) -> Answer {
    dps.delete_policy(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn dry_run(
    Call { dps, caller, .. }: ExtensionCall,
    Segments(name): Segments<String>,
    JsonBody(body): JsonBody<Value>,
) -> Answer {
    let body = body.ok_or_else(|| ApiError::malformed_body("A dry run needs an AllocationRequest body"))?;
    Ok(json(StatusCode::OK, &dps.dry_run_policy(&caller, &name, body).await?))
}
