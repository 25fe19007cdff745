//! Device certificates on Lambda: where they arrive depends on the front door the deployment declares
//! (`DPS_CLIENT_CERTIFICATES`): API Gateway mutual TLS puts the client's PEM chain in the request context
//! (`requestContext.authentication.clientCert.clientCertPem`, HTTP API payload 2.0); an ALB in mTLS passthrough
//! mode sends it as the `X-Amzn-Mtls-Clientcert` header. Either becomes the API's one `ClientCertificates`
//! extension; a function URL carries none, so the default is none and the header is then never read.

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use dps_api::{ClientCertificateSource, ClientCertificates};
use lambda_http::request::RequestContext;

/// `router` taking device certificates from `source`.
pub fn with_client_certificates(router: Router, source: ClientCertificateSource) -> Router {
    match source {
        ClientCertificateSource::ApiGateway => router.layer(axum::middleware::from_fn(api_gateway)),
        ClientCertificateSource::Alb => dps_api::with_alb_client_certificates(router),
        ClientCertificateSource::None | ClientCertificateSource::Tls => router,
    }
}

async fn api_gateway(mut req: Request, next: Next) -> Response {
    let pem = match req.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(context)) => {
            context.authentication.as_ref().and_then(|a| a.client_cert.as_ref()).and_then(|c| c.client_cert_pem.clone())
        }
        _ => None,
    };
    if let Some(pem) = pem {
        req.extensions_mut().insert(ClientCertificates::Pem(std::sync::Arc::new(pem.into_bytes())));
    }
    next.run(req).await
}
