//! The service API's OpenAPI 3.1 document, written by hand in docs/openapi.json and embedded here, served at
//! `/openapi.json` without authentication (it describes the API and holds nothing of any instance). The tests
//! below keep it true: the router's routes and the document's operations are the same set, the api-versions are
//! the extractor's, and the documented examples parse into the types the handlers read and write.

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::extract::JSON_CONTENT_TYPE;

/// The document, as checked into docs/openapi.json.
pub const OPENAPI_JSON: &str = include_str!("../../../docs/openapi.json");

/// Where the service API serves it.
pub(crate) const PATH: &str = "/openapi.json";

/// Its first (and only) path segment, for the dispatch of [`crate::app`].
pub(crate) const SEGMENT: &str = "openapi.json";

/// `GET /openapi.json`: no `api-version`, no `Authorization`.
pub(crate) async fn serve() -> Response {
    (StatusCode::OK, [(CONTENT_TYPE, JSON_CONTENT_TYPE)], OPENAPI_JSON).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::de::DeserializeOwned;
    use serde_json::Value;

    use super::*;

    fn document() -> Value {
        serde_json::from_str(OPENAPI_JSON).expect("docs/openapi.json is JSON")
    }

    /// `/enrollments/{id}` and `/enrollments/{registrationId}` alike: parameter names are the document's to choose.
    fn template(path: &str) -> String {
        let mut out = String::new();
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("{}");
                }
                '}' => in_param = false,
                c if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    }

    const METHODS: [&str; 8] = ["get", "put", "post", "delete", "patch", "head", "options", "trace"];

    fn documented_operations(doc: &Value) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
                ops.insert((method.to_string(), template(path)));
            }
        }
        ops
    }

    fn routed_operations() -> BTreeSet<(String, String)> {
        let table = crate::service::route_table();
        let mut ops = BTreeSet::new();
        for route in table.routes() {
            let op = (route.method.as_str().to_ascii_lowercase(), template(&route.path));
            assert!(ops.insert(op.clone()), "{op:?} is routed twice");
        }
        ops
    }

    #[test]
    fn every_route_is_documented_and_every_documented_operation_is_routed() {
        let documented = documented_operations(&document());
        let routed = routed_operations();
        let undocumented: Vec<_> = routed.difference(&documented).collect();
        let missing: Vec<_> = documented.difference(&routed).collect();
        assert!(undocumented.is_empty(), "routed but not in docs/openapi.json: {undocumented:?}");
        assert!(missing.is_empty(), "in docs/openapi.json but not routed: {missing:?}");
        for known in [("put", "/enrollments/{}"), ("post", "/enrollmentGroups/{}/attestationmechanism"), ("get", PATH)]
        {
            assert!(routed.contains(&(known.0.to_string(), known.1.to_string())), "{known:?} is in the table");
        }
    }

    #[test]
    fn the_documented_versions_are_the_services() {
        let doc = document();
        let listed: Vec<&str> = doc["components"]["schemas"]["ApiVersion"]["enum"]
            .as_array()
            .expect("ApiVersion enum")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(listed, crate::API_VERSIONS);
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"), "the document is versioned with the service");
    }

    /// Every `$ref` points at something; every operation has an ID (unique), responses, and declares each path
    /// parameter of its template; every path parameter it declares is in the template.
    #[test]
    fn the_document_is_consistent() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 100, "the document shares its parts through $ref");
        for r in &refs {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r}: only local references"));
            assert!(doc.pointer(pointer).is_some(), "{r} points at nothing");
        }
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let in_template: BTreeSet<&str> =
                path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
            for method in METHODS.iter().filter(|m| item.get(**m).is_some()) {
                let op = &item[*method];
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: operationId"));
                assert!(ids.insert(id.to_string()), "operationId {id} twice");
                assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()), "{id}: responses");
                let declared: BTreeSet<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().map(|p| resolve(&doc, p)).filter(|p| p["in"] == "path").collect::<Vec<_>>())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| p["name"].as_str())
                    .collect();
                assert_eq!(declared, in_template, "{id}: path parameters");
            }
        }
    }

    fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => doc.pointer(&r[1..]).unwrap_or(v),
            None => v,
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    out.push(r.clone());
                }
                map.values().for_each(|x| collect_refs(x, out));
            }
            Value::Array(items) => items.iter().for_each(|x| collect_refs(x, out)),
            _ => {}
        }
    }

    /// The examples of `schema`, each parsed into `T` and written back: what the document shows is what the
    /// handlers read, field names and enum values included (serde ignores unknown fields, so the written form
    /// must carry every field the example has).
    fn examples_parse_as<T: DeserializeOwned + serde::Serialize>(doc: &Value, schema: &str) -> usize {
        let examples = doc["components"]["schemas"][schema]["examples"]
            .as_array()
            .unwrap_or_else(|| panic!("schema {schema} has examples"));
        for example in examples {
            let parsed: T = serde_json::from_value(example.clone())
                .unwrap_or_else(|e| panic!("an example of {schema} does not parse: {e}\n{example}"));
            let written = serde_json::to_value(&parsed).unwrap();
            for (field, value) in example.as_object().unwrap() {
                assert!(written.get(field).is_some(), "{schema}.{field} of the example is not a field of the type");
                if !value.is_object() && !value.is_array() {
                    assert_eq!(&written[field], value, "{schema}.{field} reads back differently");
                }
            }
        }
        examples.len()
    }

    #[test]
    fn documented_examples_parse_into_the_handlers_types() {
        use dps_core::model::{AttestationMechanism, EnrollmentGroup, IndividualEnrollment, LinkedHub, OperationCount};
        let doc = document();
        let mut n = 0;
        n += examples_parse_as::<IndividualEnrollment>(&doc, "IndividualEnrollment");
        n += examples_parse_as::<EnrollmentGroup>(&doc, "EnrollmentGroup");
        n += examples_parse_as::<AttestationMechanism>(&doc, "AttestationMechanism");
        n += examples_parse_as::<dps_core::usecases::InstanceConfig>(&doc, "InstanceConfig");
        n += examples_parse_as::<LinkedHub>(&doc, "LinkedHub");
        n += examples_parse_as::<OperationCount>(&doc, "OperationCount");
        n += examples_parse_as::<dps_core::allocator::AllocationRequest>(&doc, "AllocationRequest");
        n += examples_parse_as::<dps_core::allocator::AllocationResponse>(&doc, "AllocationResponse");
        n += examples_parse_as::<dps_core::policy::DryRun>(&doc, "DryRun");
        assert!(n >= 10);
        // The bulk bodies go through the handler's own parsing: the envelope, then each item as its kind.
        for (schema, kind) in [
            ("BulkEnrollmentOperation", dps_core::model::EnrollmentKind::Individual),
            ("BulkEnrollmentGroupOperation", dps_core::model::EnrollmentKind::Group),
        ] {
            for example in doc["components"]["schemas"][schema]["examples"].as_array().unwrap() {
                let request: crate::wire::BulkRequest = serde_json::from_value(example.clone()).unwrap();
                let mode = request.mode;
                let items = request.items_of(kind);
                let parsed = match kind {
                    dps_core::model::EnrollmentKind::Individual => {
                        crate::service::bulk_items::<IndividualEnrollment>(mode, items, kind.collection())
                            .map(|v| v.len())
                    }
                    dps_core::model::EnrollmentKind::Group => {
                        crate::service::bulk_items::<EnrollmentGroup>(mode, items, kind.collection()).map(|v| v.len())
                    }
                };
                assert!(parsed.is_ok_and(|n| n > 0), "{schema} example: {example}");
            }
        }
    }
}
