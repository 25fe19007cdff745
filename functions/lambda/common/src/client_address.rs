//! The device's IP address on Lambda, for the per-address failure budget (`--failed-attestations-per-address`
//! locally): a function URL or an API Gateway HTTP API gives it as `requestContext.http.sourceIp` (REST APIs as
//! `requestContext.identity.sourceIp`), set by AWS and not by the client; behind an ALB it is the last entry of
//! `X-Forwarded-For`, the one the ALB appended. It becomes the API's `ClientAddress` extension, as the local
//! server's peer address does.

use std::net::IpAddr;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use dps_api::ClientAddress;
use lambda_http::request::RequestContext;

/// `router` with each request's client address taken from its Lambda request context.
pub fn with_client_addresses(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(client_address))
}

async fn client_address(mut req: Request, next: Next) -> Response {
    if let Some(ip) = address_of(&req) {
        req.extensions_mut().insert(ClientAddress(ip));
    }
    next.run(req).await
}

fn address_of(req: &Request) -> Option<IpAddr> {
    let raw = match req.extensions().get::<RequestContext>()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.clone()?,
        RequestContext::ApiGatewayV1(context) => context.identity.source_ip.clone()?,
        RequestContext::Alb(_) => {
            let forwarded = req.headers().get_all("x-forwarded-for").iter().next_back()?.to_str().ok()?;
            forwarded.rsplit(',').next()?.trim().to_string()
        }
        _ => return None,
    };
    raw.parse().ok()
}
