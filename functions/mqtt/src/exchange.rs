//! One request and its answer: a PUBLISH becomes the HTTPS API's request (same path, query, `Authorization`,
//! body), the device router answers it, and its status, `Retry-After` and body become the response PUBLISH. The
//! answers are the HTTPS API's own by construction: validation, error bodies, limits and logs included.

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use dps_api::ApiError;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{Extensions, HeaderValue, Method};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use tower::ServiceExt;

use crate::device::Device;
use crate::topic::{Request, Topic, response_topic};

/// Everything but RFC 3986's unreserved characters is encoded in a path segment or query value, so that no
/// value from the user name or topic can add a segment or a parameter.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Largest answer body taken from the router (its answers are far smaller).
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// An answer ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `$dps/registrations/res/{status}/?$rid={rid}[&retry-after={secs}]`.
    pub topic: String,
    /// The HTTPS answer's body.
    pub body: Bytes,
}

/// The HTTPS request a publish stands for, or the error answer when it stands for none.
pub fn to_http(
    device: &Device,
    topic: &Topic,
    payload: Bytes,
    extensions: &Extensions,
) -> Result<http::Request<Body>, ApiError> {
    let (method, tail, body) = match &topic.request {
        Request::Register => (Method::PUT, "/register".to_string(), payload),
        // The poll's body (" " from Python, the registration JSON from the C SDK) is ignored, as the HTTPS GET's is.
        Request::OperationStatus { operation_id } => {
            (Method::GET, format!("/operations/{}", encode(operation_id)), Bytes::new())
        }
        Request::MissingOperationId => {
            return Err(ApiError::invalid("The operation status topic needs an operationId parameter"));
        }
        Request::MissingRid => return Err(ApiError::invalid("The topic needs a $rid parameter")),
        Request::Unknown => return Err(ApiError::no_route()),
    };
    let mut uri = format!("/{}/registrations/{}{tail}", encode(&device.id_scope), encode(&device.registration_id));
    if let Some(version) = &device.api_version {
        uri.push_str("?api-version=");
        uri.push_str(&encode(version));
    }
    let mut request = http::Request::builder().method(method).uri(uri);
    if let Some(token) = &device.authorization {
        request = request.header(AUTHORIZATION, token.clone());
    }
    if !body.is_empty() {
        // MQTT has no content type; the DPS body is JSON by definition.
        request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    let mut request = request
        .header(CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .map_err(|e| ApiError::internal(format!("building the request of an MQTT publish: {e}")))?;
    request.extensions_mut().extend(extensions.clone());
    Ok(request)
}

/// Ask the router, and turn its response into the answer for `rid`.
pub async fn ask(router: Router, request: http::Request<Body>, rid: String) -> Answer {
    let Ok(response) = router.oneshot(request).await;
    from_http(response, &rid).await
}

/// An error answered here (not by the router), in the router's shape: the Azure body with a tracking ID.
pub async fn refuse(error: ApiError, rid: &str) -> Answer {
    let tracking_id = uuid::Uuid::new_v4().to_string();
    tracing::info!(tracking_id = %tracking_id, code = error.code(), reason = %error.message, "mqtt request refused");
    from_http(dps_api::layers::error_answer(error, &tracking_id), rid).await
}

async fn from_http(response: Response, rid: &str) -> Answer {
    let status = response.status().as_u16();
    let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
    match axum::body::to_bytes(response.into_body(), MAX_ANSWER_BYTES).await {
        Ok(body) => Answer { topic: response_topic(status, rid, retry_after.as_deref()), body },
        Err(e) => Box::pin(refuse(ApiError::internal(format!("reading the router's answer: {e}")), rid)).await,
    }
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device {
            id_scope: "0ne00000001".into(),
            registration_id: "dev:1".into(),
            api_version: Some("2019-03-31".into()),
            authorization: Some(HeaderValue::from_static("SharedAccessSignature sr=x")),
            keep_alive: 60,
        }
    }

    #[test]
    fn a_register_publish_is_the_https_put() {
        let topic = Topic::parse("$dps/registrations/PUT/iotdps-register/?$rid=1");
        let req = to_http(&device(), &topic, Bytes::from_static(b"{}"), &Extensions::new()).unwrap();
        assert_eq!(req.method(), Method::PUT);
        assert_eq!(req.uri(), "/0ne00000001/registrations/dev%3A1/register?api-version=2019-03-31");
        assert_eq!(req.headers()[AUTHORIZATION], "SharedAccessSignature sr=x");
        assert_eq!(req.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn values_cannot_add_segments_or_parameters() {
        let mut d = device();
        d.registration_id = "a/../../x?y=1".into();
        d.api_version = Some("2019-03-31&x=1".into());
        let topic = Topic::parse("$dps/registrations/GET/iotdps-get-operationstatus/?$rid=1&operationId=..%2F..");
        let req = to_http(&d, &topic, Bytes::from_static(b" "), &Extensions::new()).unwrap();
        assert_eq!(
            req.uri(),
            "/0ne00000001/registrations/a%2F..%2F..%2Fx%3Fy%3D1/operations/..%2F..?api-version=2019-03-31%26x%3D1"
        );
        assert_eq!(req.headers()[CONTENT_LENGTH], "0", "the poll's body is not passed on");
    }
}
