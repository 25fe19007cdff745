//! Client certificates: one request extension, whichever front door received the certificate. The local server
//! inserts it from the TLS handshake; the Lambda library from API Gateway's mutual TLS request context; the
//! [`with_alb_client_certificates`] layer from an Application Load Balancer's passthrough header. A header is
//! read only where the deployment declares that front door: no client can send a certificate as a header
//! anywhere else.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;

/// The header an ALB in mTLS passthrough mode forwards: the client's PEM chain, URL-encoded (`+`, `=` and `/`
/// left as they are).
pub const ALB_CLIENT_CERT_HEADER: &str = "x-amzn-mtls-clientcert";

/// The client certificate chain a front door received, leaf first: DER from a TLS handshake, or PEM text as a
/// proxy forwarded it (parsed, within the chain bounds, when a handler reads it, so that a bad one is answered
/// through the error table like any other bad credential).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCertificates {
    /// DER certificates from the server's own handshake.
    Der(Arc<Vec<Vec<u8>>>),
    /// A PEM chain from a proxy (API Gateway's `clientCertPem`, an ALB's decoded header).
    Pem(Arc<Vec<u8>>),
}

impl ClientCertificates {
    /// The chain as DER, or a 401 that says what is wrong with it.
    pub fn der(&self) -> Result<Vec<Vec<u8>>, ApiError> {
        match self {
            Self::Der(chain) => Ok(chain.as_ref().clone()),
            Self::Pem(pem) => dps_attestation::x509::pem_to_der(pem)
                .map_err(|e| ApiError::from(dps_core::Error::unauthorized(format!("Invalid certificate: {e}")))),
        }
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

/// `router` taking device certificates from an ALB's passthrough header (which never reaches a handler).
pub fn with_alb_client_certificates(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(alb_header))
}

async fn alb_header(mut req: Request, next: Next) -> Response {
    let values: Vec<_> = req.headers().get_all(ALB_CLIENT_CERT_HEADER).iter().cloned().collect();
    req.headers_mut().remove(ALB_CLIENT_CERT_HEADER);
    let pem = match values.as_slice() {
        [] => return next.run(req).await,
        // One chain per connection: two headers are not a chain (the empty text reads as no certificate).
        [one] => percent_encoding::percent_decode(one.as_bytes()).collect(),
        _ => Vec::new(),
    };
    req.extensions_mut().insert(ClientCertificates::Pem(Arc::new(pem)));
    next.run(req).await
}
