//! Client certificates: one request extension, whichever front door received the certificate. The local server
//! inserts it from the TLS handshake; the Lambda library from API Gateway's mutual TLS request context; the
//! [`with_alb_client_certificates`] layer from an Application Load Balancer's passthrough header. A header is
//! read only where the deployment declares that front door: no client can send a certificate as a header
//! anywhere else.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The header an ALB in mTLS passthrough mode forwards: the client's PEM chain, URL-encoded (`+`, `=` and `/`
/// left as they are).
pub const ALB_CLIENT_CERT_HEADER: &str = "x-amzn-mtls-clientcert";

/// The client certificate chain a front door received: DER, leaf first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificates(pub Arc<Vec<Vec<u8>>>);

impl ClientCertificates {
    /// From a PEM chain (API Gateway's `clientCertPem`, an ALB's decoded header), within the chain bounds.
    pub fn from_pem(pem: &[u8]) -> Result<Self, ApiError> {
        dps_attestation::x509::pem_to_der(pem)
            .map(|ders| Self(Arc::new(ders)))
            .map_err(|e| ApiError::from(dps_core::Error::unauthorized(format!("Invalid certificate: {e}"))))
    }
}

/// Where a deployment's device certificates arrive, as its configuration declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ClientCertificateSource {
    /// Nowhere: X.509 devices cannot register (a Lambda function URL carries no client certificate).
    #[default]
    None,
    /// The server's own TLS handshake (the local `dps` binary).
    Tls,
    /// API Gateway mutual TLS (`requestContext.authentication.clientCert`), read by the Lambda library.
    ApiGateway,
    /// An ALB in mTLS passthrough mode (the `X-Amzn-Mtls-Clientcert` header).
    Alb,
}

impl std::str::FromStr for ClientCertificateSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "" | "none" => Ok(Self::None),
            "tls" => Ok(Self::Tls),
            "api-gateway" | "apigateway" => Ok(Self::ApiGateway),
            "alb" => Ok(Self::Alb),
            other => Err(format!("unknown client certificate source '{other}' (none, tls, api-gateway, alb)")),
        }
    }
}

/// `router` taking device certificates from an ALB's passthrough header. A malformed or oversized header is a
/// 401 that names the problem; the header never reaches a handler.
pub fn with_alb_client_certificates(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(alb_header))
}

async fn alb_header(mut req: Request, next: Next) -> Response {
    let Some(value) = req.headers_mut().remove(ALB_CLIENT_CERT_HEADER) else {
        return next.run(req).await;
    };
    if req.headers().contains_key(ALB_CLIENT_CERT_HEADER) {
        return bad("Invalid certificate: more than one client certificate header").into_response();
    }
    let decoded: Vec<u8> = percent_encoding::percent_decode(value.as_bytes()).collect();
    match ClientCertificates::from_pem(&decoded) {
        Ok(certs) => {
            req.extensions_mut().insert(certs);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

fn bad(message: &str) -> ApiError {
    ApiError::from(dps_core::Error::unauthorized(message))
}
